"""--compile: the decoder layers compiled for the training step take the eager step's arithmetic, compile
once for every batch shape, and leave evaluation uncompiled. Real dynamo and AOT autograd ("aot_eager":
no code generation) check the arithmetic bit for bit; the CLI runs real inductor (C++ kernels on a CPU).
The CUDA-graph capture of compiled layers is scripts/gpu_smoke.sh's (`compiled = eager`, `resume =
uninterrupted (compile)`)."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from torch._dynamo.utils import counters

from nli_qlora.config import preset
from nli_qlora.data.batches import Encoded, collate
from nli_qlora.model.compile_layers import compile_layers_, decoder_layers, is_compiled, uncompiled
from nli_qlora.tools.tune import Candidate
from nli_qlora.training.evaluate import predict
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import train_step
from tests.test_dequantize_base import _bundle
from tests.test_step_modes import _batches


@pytest.fixture(autouse=True)
def fresh_dynamo():
    import torch.fx.experimental._config as fx_config
    duck = fx_config.use_duck_shape  # compile_layers_ turns it off for the process
    limit = torch._dynamo.config.recompile_limit  # and raises this one for static shapes
    tag = torch.compiler.config.cache_key_tag  # and tags the caches' key with the attention kernel
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
    fx_config.use_duck_shape = duck
    torch._dynamo.config.recompile_limit = limit
    torch.compiler.config.cache_key_tag = tag


CACHE_PROBE = """
import sys, torch
from torch._dynamo.utils import counters
from nli_qlora.model.compile_layers import tag_caches
print("tag", tag_caches(sys.argv[1]))
f = torch.compile(lambda x: (x.sin() * 2).sum(), backend="inductor")
f(torch.randn(8, requires_grad=True)).backward()
print("hits", counters["inductor"]["fxgraph_cache_hit"], counters["aot_autograd"]["autograd_cache_hit"])
"""


def test_the_attention_kernel_is_in_the_compile_caches_key(tmp_path):
    """Compiled layers fix SDPA's kernel when traced, and the caches' own keys do not hold SDPA's settings:
    without the tag a run would get the kernel of whichever run filled the cache. Real inductor and its
    disk caches, one process per run: a second run with the same choice loads from the caches, a run with
    the other choice compiles anew; a tag of the user's stays in the key."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "TORCH_COMPILE_CACHE_KEY_TAG": "mine"}

    def run(kernel: str) -> tuple[str, list[int]]:
        out = subprocess.run([sys.executable, "-c", CACHE_PROBE, kernel], env=env, capture_output=True, text=True,
                             check=True).stdout.splitlines()
        return out[0].split(" ", 1)[1], [int(n) for n in out[-1].split()[1:]]

    assert run("auto") == ("mine;nli_qlora.attention_kernel=auto", [0, 0])  # compiled, written to the caches
    assert all(run("auto")[1])  # the same choice: inductor's (forward, backward) and AOT autograd's caches hit
    assert run("flash") == ("mine;nli_qlora.attention_kernel=flash", [0, 0])  # the other: compiled anew


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def _shapes() -> list[dict]:
    """Batches of three widths, the last one shorter: the shapes one run meets. The first is as wide as
    an attention head (16 in the tiny model): compiled with duck shapes, the width would take the head's
    symbol and be specialized with it, and every other width would compile again."""
    g = torch.Generator().manual_seed(1)
    rows = lambda n, length: [Encoded(tuple(torch.randint(3, 100, (length,), generator=g).tolist()), i % 3, i)
                              for i in range(n)]
    return [collate(rows(8, 10), pad_id=0, pad_multiple=16)] + _batches(2) + [collate(rows(3, 40), pad_id=0, pad_multiple=16)]


def _losses(cfg, bundle, batches) -> list[float]:
    torch.manual_seed(0)
    trainer, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=100)
    return [train_step(trainer, [batches[i % len(batches)]])["loss"] for i in range(8)]


def test_compiled_layers_take_the_eager_steps_bit_for_bit_compile_once_and_leave_evaluation_alone():
    batches = _shapes()
    assert len({tuple(b["input_ids"].shape) for b in batches}) == 3
    cfg, plain = _bundle()  # LoRA dropout on: the random stream is the eager one too
    cfg_c, compiled = _bundle(compile=True)
    assert compile_layers_(compiled.model, backend="aot_eager") == len(decoder_layers(compiled.model)) == 2
    assert all(is_compiled(layer) for layer in decoder_layers(compiled.model))
    # evaluation first: its shapes and its pass without gradients compile nothing, and score alike
    g = torch.Generator().manual_seed(2)
    rows = [Encoded(tuple(torch.randint(3, 100, (n,), generator=g).tolist()), n % 3, i)
            for i, n in enumerate([5, 9, 17, 30, 12, 6, 25])]
    scorers = [trainer_for(c, b.model, b.label_ids, 10)[0].scorer for c, b in ((cfg, plain), (cfg_c, compiled))]
    assert (predict(scorers[1], rows, 3, pad_id=0) == predict(scorers[0], rows, 3, pad_id=0)).all()
    assert _graphs() == 0
    # training: the eager step's losses bit for bit (trainer_for keeps the layers compiled above); the
    # layers share one code object, so two graphs serve all layers and every batch shape: one for the
    # first layer (its input takes no gradient), one for the others
    with uncompiled(unless=True):  # as the tuner and the benchmarks run a case that asked for --compile
        got = _losses(cfg_c, compiled, batches)
    assert got == _losses(cfg, plain, batches)
    assert _graphs() == 2


def test_a_run_with_few_shapes_compiles_each_past_dynamos_default_limit_and_takes_the_eager_steps():
    """The loop counts its step shapes (5 here) and, at most STATIC_SHAPES of them, compiles each static:
    two graphs a shape, 10 in all, past dynamo's default limit of 8 graphs a code object (which would
    have run the fifth shape's layers uncompiled: 8 graphs); the eager step's losses bit for bit."""
    from nli_qlora.model.compile_layers import STATIC_SHAPES, static_shapes
    assert torch._dynamo.config.recompile_limit == 8
    assert static_shapes(5) and static_shapes(STATIC_SHAPES) and not static_shapes(STATIC_SHAPES + 1)
    assert not static_shapes(None)  # the tuner and the benchmarks: one dynamic graph
    g = torch.Generator().manual_seed(1)
    rows = lambda n, length: [Encoded(tuple(torch.randint(3, 100, (length,), generator=g).tolist()), i % 3, i)
                              for i in range(n)]
    batches = [collate(rows(n, length), pad_id=0, pad_multiple=16)
               for n, length in ((8, 10), (8, 20), (8, 40), (3, 40), (5, 60))]
    assert len({tuple(b["input_ids"].shape) for b in batches}) == 5
    cfg, plain = _bundle()
    cfg_c, compiled = _bundle(compile=True)
    compile_layers_(compiled.model, backend="aot_eager", shapes=5)
    with uncompiled(unless=True):
        got = _losses(cfg_c, compiled, batches)
    assert got == _losses(cfg, plain, batches)
    assert _graphs() == 10


def test_the_tuner_leaves_compile_off_where_it_turns_checkpointing_on():
    cfg = dataclasses.replace(preset("tiny"), compile=True)
    assert Candidate(8, 1, gradient_checkpointing=False, bucketing=True).settings(cfg)["compile"] is True
    assert Candidate(8, 1, gradient_checkpointing=True, bucketing=True).settings(cfg)["compile"] is False
    cfg = dataclasses.replace(cfg, compile=False)
    assert Candidate(8, 1, gradient_checkpointing=False, bucketing=True).settings(cfg)["compile"] is False


def test_compile_with_gradient_checkpointing_is_one_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--compile",
                           "--gradient-checkpointing", "--output-dir", str(tmp_path / "run")],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--compile: not with --gradient-checkpointing" in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_compile_without_a_cpu_compiler_is_one_line_before_the_model_trains(tmp_path):
    """Inductor writes C++ on a CPU: a machine without a working compiler (here CXX names none) is told
    so in one line before training starts, not by an internal error at the first step."""
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--compile", "--output-dir",
                           str(tmp_path / "run")], capture_output=True, text=True,
                          env={**os.environ, "CXX": str(tmp_path / "no-such-g++")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "--compile: on a CPU inductor compiles C++ and found no working compiler" in last, last
    assert "Traceback" not in proc.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] \
        if (tmp_path / "run" / "metrics.jsonl").exists() else []
    assert not any(r["event"] == "step" for r in records)
    dry = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--compile", "--dry-run"],
                         capture_output=True, text=True, env={**os.environ, "CXX": str(tmp_path / "no-such-g++")})
    assert dry.returncode == 2 and "--compile: on a CPU inductor compiles C++" in dry.stderr, dry.stderr[-2000:]


def _steps(run) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["event"] == "step"]


def test_a_compiled_run_trains_as_the_uncompiled_one(tmp_path):
    """The command as a user runs it, inductor generating and compiling the kernels (into a fresh cache:
    the cold path) and the layers compiled for training only; the steps within float32 rounding of
    the uncompiled run's, which inductor's fused kernels sum in another order."""
    flags = ["--preset", "tiny", "--train-size", "64", "--validation-size", "32", "--test-size", "32",
             "--epochs", "1", "--quiet"]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    runs = {}
    for name, extra in (("plain", []), ("compiled", ["--compile"])):
        proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", *flags, *extra, "--output-dir",
                               str(tmp_path / name)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = tmp_path / name
    start = json.loads((runs["compiled"] / "metrics.jsonl").read_text().splitlines()[0])
    assert start["model"]["compiled"] is True and start["config"]["compile"] is True
    assert any((tmp_path / "inductor").iterdir())  # inductor cached what it compiled where it was told
    plain, compiled = _steps(runs["plain"]), _steps(runs["compiled"])
    # compiled per shape: the shapes counted before training are the ones the steps had (one here: each
    # shape compiles C++ anew, so more would only lengthen the test; five shapes are the aot_eager test's)
    met = {(s["samples"], s["padded_tokens"] // s["samples"]) for s in compiled}
    assert start["model"]["compiled_shapes"] == len(met) >= 1
    assert len(plain) == len(compiled) == 4
    for a, b in zip(plain, compiled):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * abs(a["loss"]), (a["loss"], b["loss"])


def test_a_first_width_equal_to_the_rotary_dimension_does_not_specialize_the_graph():
    """A Llama layer's rotary embedding has the head's width (16 here). Compiled with duck shapes, a first
    batch 16 tokens wide gave the width and the rotary dimension one symbol, the rotary multiply
    specialized it to 16, and every later width compiled the layers again (SmolLM2's 64 on the H200)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert config.hidden_size // config.num_attention_heads == 16
    compile_layers_(model, backend="aot_eager")
    for batch, width in ((2, 16), (2, 32), (3, 48)):
        model(input_ids=torch.randint(0, 128, (batch, width))).logits.sum().backward()
    assert _graphs() == 2  # the first layer's and the others', for all three shapes


def test_compile_without_triton_on_a_gpu_is_one_line():
    """The GPU half of the compiler check, forced on a machine without a GPU: this CPU build of torch has
    no Triton, which is what a GPU machine without it would report."""
    from torch.utils._triton import has_triton

    from nli_qlora.infra.errors import UserError
    from nli_qlora.model.compile_layers import check_inductor_can_build
    if has_triton():
        pytest.skip("Triton is importable here")
    with pytest.raises(UserError) as err:
        check_inductor_can_build(torch.device("cuda"))
    assert str(err.value) == ("--compile: inductor needs Triton on a GPU and cannot import it here: "
                              "pip install triton, or leave --compile off")
