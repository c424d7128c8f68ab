"""python -m nli_qlora.gguf FILE: convert a GGUF model once into the cache and print the checkpoint directory."""

from __future__ import annotations

import sys
from pathlib import Path

from nli_qlora.config import OneLineParser
from nli_qlora.infra.errors import UserError
from nli_qlora.model.gguf import converted_all, find_gguf


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m nli_qlora.gguf",
                           description="Convert a GGUF model once into the cache; print the checkpoint directory.")
    parser.add_argument("file", help="a .gguf file, or the name of one an installed package ships")
    args = parser.parse_args(argv)
    path = Path(args.file)
    if not path.is_file():
        path = find_gguf(args.file)
        if path is None:
            print(f"python -m nli_qlora.gguf: no such GGUF file {args.file!r}", file=sys.stderr)
            return 2
    try:
        out = converted_all(path)["model"]
    except UserError as err:
        print(f"python -m nli_qlora.gguf: {err}", file=sys.stderr)
        return err.exit_code
    if out is None:
        return 2
    print(out)
    return 0
