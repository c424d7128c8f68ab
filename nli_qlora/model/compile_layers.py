"""--compile: torch.compile of each decoder layer (regional compilation) for the training step.

A batch-8 QLoRA step is bound by the number of small kernels, not by arithmetic (docs/benchmarks.md,
issue 14). Inductor fuses each layer's norms, rotary embedding, activation, dropout and LoRA scale
and sum into a few Triton kernels; the CUDA graph then records those instead of eager PyTorch's
(SmolLM2 8 x 64 on an H200: 6,270 kernels a step -> 2,962). The layers of a model share one code
object, so one compilation serves them all and its cost does not grow with depth, unlike compiling
the whole model; the model's own forward (embedding, masks, head, the label scoring) stays eager.

- Static shapes where the run's steps have few: bucketing and --pad-to-multiple give a run a handful
  of batch shapes (SmolLM2 on SNLI: 5), which the loop counts before training (data.batches.step_shapes).
  Up to STATIC_SHAPES of them, each shape compiles on its own: the whole SmolLM2 command took 35 s warm
  and 76 s cold that way on the H200, against 54 s and 85 s with one dynamic graph, whose symbolic
  sizes also miss AOT autograd's cache (docs/benchmarks.md, seventh round). Dynamo's recompile limit
  (8 graphs a code object) is raised to hold them: two graphs a shape (the first layer's, whose input
  takes no gradient, and the others'). More shapes than that, or a caller that does not know them
  (the tuner, the benchmarks): one dynamic graph. Without duck shapes: dynamo gives sizes that are equal
  at the first compilation one symbol, so a first width equal to the rotary dimension (SmolLM2's 64)
  was specialized with it and the next width compiled everything again (17 s on the H200).
- Evaluation runs the layers uncompiled (training.evaluate, under torch.compiler.set_stance
  "force_eager"): without gradients and at its own batch shapes it would compile again, for a pass
  that is already fast.
- Inductor caches what it compiled (FX graphs, autograd graphs, Triton kernels) in its own folder,
  TORCHINDUCTOR_CACHE_DIR (default /tmp/torchinductor_USER): the next run of the same model loads
  its kernels instead of compiling them. Left to inductor: bitsandbytes' import has fixed the
  folder before nli_qlora could choose another, and users of torch.compile know the variable.
- The attention kernel (RunConfig.attention_kernel) is fixed in a layer's graph when it is traced, and
  neither dynamo's guards nor the caches' keys hold SDPA's settings: a warm cache would give a run the
  kernel of the run that filled it (checked on a CPU: a graph traced under the math kernel came back
  from the cache for a process under flash). So the choice goes into the caches' key
  (torch.compiler.config.cache_key_tag, beside any TORCH_COMPILE_CACHE_KEY_TAG of the user's). Within
  one process a layer keeps the graphs of its first compilation, as it keeps them for any setting."""

from __future__ import annotations

import contextlib
import os
import sys

import torch
import torch.fx.experimental._config as fx_config

from nli_qlora.infra.errors import UserError


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks: transformers' decoder layers subclass GradientCheckpointingLayer."""
    from transformers.modeling_layers import GradientCheckpointingLayer
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def inductor_cache() -> str:
    """The folder inductor caches compiled graphs and kernels in (for the log)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    return cache_dir()


STATIC_SHAPES = 8  # a compilation per shape up to this many step shapes; one dynamic graph beyond


def static_shapes(shapes: int | None) -> bool:
    """Compile per shape (True) or one dynamic graph: static when the caller counted few shapes."""
    return shapes is not None and shapes <= STATIC_SHAPES


def compile_layers_(model: torch.nn.Module, backend: str = "inductor", shapes: int | None = None,
                    attention_kernel: str = "flash") -> int:
    """Compile every decoder layer of `model` in place (nn.Module.compile); the number compiled.
    Compilation itself happens at the first step of each shape. `shapes`: how many distinct batch
    shapes the training steps will have, when the caller knows (static_shapes). `backend`: the tests
    use "aot_eager" (dynamo and AOT autograd, no code generation) to check the arithmetic.
    `attention_kernel`: the run's RunConfig.attention_kernel, for the caches' key (tag_caches)."""
    if not hasattr(torch.compiler, "set_stance"):
        raise UserError(f"--compile: needs torch 2.6 or newer (evaluation turns the compiled layers off with "
                        f"torch.compiler.set_stance); this is torch {torch.__version__}")
    if backend == "inductor":
        check_inductor_can_build(next(model.parameters()).device)
    layers = decoder_layers(model)
    if not layers:
        raise UserError(f"--compile: found no decoder layers in {type(model).__name__} to compile")
    fx_config.use_duck_shape = False  # process-wide; it changes which symbols sizes get, never a result
    tag_caches(attention_kernel)
    static = static_shapes(shapes)
    if static:  # process-wide too. Two graphs a shape, and room as much again for shapes an out-of-memory
        # retry adds (--auto-batch); past the limit dynamo would run a new shape's layers uncompiled
        import torch._dynamo as dynamo
        dynamo_config = dynamo.config
        limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        setattr(dynamo_config, limit, max(getattr(dynamo_config, limit), 4 * STATIC_SHAPES))
    for layer in layers:
        if not is_compiled(layer):  # a second call (a second trainer on one model) keeps the first's graphs
            layer.compile(backend=backend, dynamic=not static)
    return len(layers)


def tag_caches(attention_kernel: str) -> str:
    """Put the attention kernel into the key of torch.compile's caches (process-wide, as the caches are);
    the tag set."""
    config = getattr(torch.compiler, "config", None)
    if config is None or not hasattr(config, "cache_key_tag"):  # a torch without the tag: nothing to set
        return ""
    mine = f"nli_qlora.attention_kernel={attention_kernel}"
    config.cache_key_tag = ";".join(t for t in (os.environ.get("TORCH_COMPILE_CACHE_KEY_TAG", ""), mine) if t)
    return config.cache_key_tag


def check_inductor_can_build(device: torch.device) -> None:
    """Inductor writes C++ on a CPU and Triton on a GPU; without the compiler it would fail at the first
    step, after loading and the zero-shot evaluations, as an internal error. Here: one line, at once."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton
        if not has_triton():
            raise UserError("--compile: inductor needs Triton on a GPU and cannot import it here: "
                            "pip install triton, or leave --compile off")
        return
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # another layout of torch's internals: inductor reports it itself
        return
    try:
        get_cpp_compiler()
    except Exception as err:  # InvalidCxxCompiler
        raise UserError(f"--compile: on a CPU inductor compiles C++ and found no working compiler "
                        f"({str(err).splitlines()[0]}): install g++ (or set CXX), or leave --compile off") from None


def uncompiled(unless: bool = False):
    """Inside, compiled code runs as plain eager PyTorch: evaluation, and a tuner candidate or benchmark
    case without --compile on a model an earlier one compiled (`unless` its own setting compiles).
    Where dynamo was never imported nothing is compiled, and setting the stance would import it."""
    if not unless and "torch._dynamo" in sys.modules and hasattr(torch.compiler, "set_stance"):
        return torch.compiler.set_stance("force_eager")
    return contextlib.nullcontext()


def is_compiled(layer: torch.nn.Module) -> bool:
    return getattr(layer, "_compiled_call_impl", None) is not None
