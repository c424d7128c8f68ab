"""--fused-rope: the rotary embedding of q and k as one Triton kernel each way (Liger-Kernel's).

transformers writes it as q * cos + rotate_half(q) * sin, and the same for k: a slice, a negation, a
concatenation, two multiplies and an add each, and their gradients. On one H200 at SmolLM2's shapes
(batch 8 x 64) that is 47 kernels forward and backward against 23 with Liger-Kernel's `_triton_rope`,
which rotates q and k together in one launch; the whole step went 3,455 -> 2,675 kernels and
13.8 -> 12.1 ms (docs/benchmarks.md, fourteenth round). The kernel is Liger-Kernel's
(`liger_kernel.ops.rope`: maintained, tested against transformers' Llama code) rather than one of
our own. Liger's `LigerRopeFunction` is not used as is only because a capture needs to know when its
backward kernel has run (below); its forward and backward functions are called unchanged.

Where: transformers' attention modules call their module's `apply_rotary_pos_emb(q, k, cos, sin)`.
That name is replaced, once per model family, by a dispatcher that calls Liger's kernel inside the
attention modules fuse_rope_ marked and transformers' own function everywhere else (another model in
the process, a compiled layer: inductor fuses the rotary embedding itself). A family's function is
replaced only if it computes the formula the kernel computes, checked once in float32 on a small
input (an interleaved or otherwise different rotary embedding keeps its own code). Phi rotates the
first 40% of each head and passes the rest: the kernel gets that part, as transformers' function does.

Rounding: the kernel computes in the inputs' dtype, as transformers does; in bfloat16 the two may
differ by one unit in the last place. Runs with and without it train alike, not bit for bit.

In place, as Liger's own LigerRopeFunction: the kernel rotates q and k where `.contiguous()` leaves
them, which for Llama's q_proj and k_proj outputs is their own buffer (with --fused-projections and for
Phi's rotated slice, a copy), and rotates the incoming gradients where they lie; autograd's version
counters do not see it. That is sound while nothing keeps those outputs or gradients for anything else:
peft's LoRA, model.fused_lora, bitsandbytes and the dequantized base keep their inputs, not their
outputs (the tests compare outputs and gradients with real peft layers). A layer that kept its output
(a DoRA-style update, a hook storing activations) would need the copy made first.

CUDA graphs: Triton compiles and loads a kernel at its first launch for each specialization (batch
size, whether the length is a multiple of 16, ...), and loading a module is not allowed while a
stream is being captured. So inside a capture the kernel runs only for shapes whose forward and
backward kernels have already run outside one in this process (the first shape's eager warm-up, an
evaluation); a shape first met inside a capture (a last, smaller batch) runs transformers' function
there, which is always allowed. Outside a capture the kernel always runs (Triton compiles as needed).

A process's first Triton launch costs 0.7 s on the lent H200 with Triton's disk cache warm (2.0 s cold):
0.42 s hashing Triton's own files for its cache key, 0.26 s importing its CUDA backend, then the
kernel loaded; a run paid it in its first evaluation (docs/benchmarks.md, fourteenth round). So
model.bundle.load_bundle starts warm_up_meanwhile as the model starts loading, and fuse_rope_, at
the end of the load, waits for it: the launch passes while the weights load, and the thread never
runs beside an evaluation, a compilation or a CUDA-graph capture. Each later shape costs milliseconds.

On a CPU the kernel does not run (Triton needs a GPU): the count is 0 and nothing changes. With
Triton's interpreter on (TRITON_INTERPRET=1, as the tests run it) it runs there in float32 (the
interpreter's bfloat16 gives garbage, so bfloat16 keeps transformers' code)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
import threading
import types

import torch

from nli_qlora.infra.errors import UserError

NAME = "apply_rotary_pos_emb"  # the function transformers' attention modules call by this global name
_INSIDE = contextvars.ContextVar("nli_fused_rope_inside", default=False)  # in a marked attention's forward
_RAN_FORWARD: set[tuple] = set()  # specializations whose forward kernel ran outside a capture
_RAN_BACKWARD: set[tuple] = set()
_WARMING: threading.Thread | None = None  # warm_up_meanwhile's thread, until fuse_rope_ waits for it


@functools.cache
def liger_rope():
    """Liger-Kernel's rope module, or a one-line error naming the package."""
    try:
        from liger_kernel.ops import rope
    except ImportError as exc:
        raise UserError(f"--fused-rope: needs the liger-kernel package ({exc}); install it with "
                        "pip install 'nli-qlora[liger]', or run with --no-fused-rope") from None
    return rope


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def runs_on(device: torch.device) -> bool:
    """Whether the kernel can run on this device: CUDA, or a CPU under Triton's interpreter."""
    return device.type == "cuda" or (device.type == "cpu" and _interpreted())


# the dtypes our own Triton kernels take (model.lora_input_grad, model.lora_dropout): CUDA's half types, and
# float32 on a CPU, where they run in Triton's interpreter (the tests)
KERNEL_DTYPES = {"cuda": (torch.bfloat16, torch.float16), "cpu": (torch.float32,)}


def specialization(*values: int) -> tuple:
    """How Triton specializes integer arguments and pointers: value 1, and divisibility by 16 (the capture
    gates of our own kernels key on it: model.lora_input_grad, model.lora_dropout)."""
    return tuple((v == 1, v % 16 == 0) for v in values)


def capturing(t: torch.Tensor) -> bool:
    """Whether a CUDA graph is being captured on the current stream (where no Triton kernel may load)."""
    return t.is_cuda and torch.cuda.is_current_stream_capturing()  # (a CPU build has no capture to ask about)


def _key(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor) -> tuple:
    """What Triton specializes the kernel on, or finer (never coarser: a coarser key could let a
    capture meet an unloaded kernel): device, dtype, the shapes, the length modulo 16."""
    b, hq, t, d = q.shape
    return (q.device, q.dtype, b, hq, k.shape[1], t % 16, t == 1, d, cos.shape[0], cos.shape[-1])


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def reference(q, k, cos, sin):
    """The formula Liger's kernel computes (cos, sin: [B, T, D], broadcast over the heads)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


class _Rope(torch.autograd.Function):
    """Liger's rope_forward / rope_backward (in place on contiguous copies, as LigerRopeFunction),
    noting the backward's specialization once it has run outside a capture."""

    @staticmethod
    def forward(ctx, q, k, cos, sin):
        key = _key(q, k, cos)
        q, k, cos, sin = liger_rope().rope_forward(q, k, cos, sin)
        ctx.save_for_backward(cos, sin)
        ctx.key = key
        if not capturing(q):
            _RAN_FORWARD.add(key)
        return q, k

    @staticmethod
    def backward(ctx, dq, dk):
        cos, sin = ctx.saved_tensors
        dq, dk = liger_rope().rope_backward(dq, dk, cos, sin)
        if not capturing(dq):
            _RAN_BACKWARD.add(ctx.key)
        return dq, dk, None, None


def warm_up_meanwhile(device: torch.device, dtype: torch.dtype) -> threading.Thread | None:
    """Launch the kernel once each way on a small input, on a thread: the process's first launch,
    paid while the model loads (the hashing releases the interpreter lock). None where the kernel
    cannot run. liger-kernel is imported here, on the calling thread: a missing package is the
    flag's one-line error before the model loads, not a failure inside the thread."""
    global _WARMING
    if not runs_on(device) or _WARMING is not None:
        return None
    rope = liger_rope()
    dtype = dtype if device.type == "cuda" else torch.float32  # (the interpreter: float32 only)
    if device.type == "cuda" and device.index is None:  # "cuda" means this thread's device, not the new one's
        device = torch.device("cuda", torch.cuda.current_device())

    def launch() -> None:
        try:  # on the run's device: a new thread's current CUDA device is the first one
            with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
                q = torch.ones(1, 2, 16, 64, device=device, dtype=dtype)
                k = torch.ones(1, 1, 16, 64, device=device, dtype=dtype)
                cos = torch.ones(1, 16, 64, device=device, dtype=dtype)
                q, k, cos, sin = rope.rope_forward(q, k, cos, cos.clone())
                rope.rope_backward(q, k, cos, sin)
        except Exception as exc:  # the run's own first launch meets it and reports it in context
            thread.failed = exc

    # not a daemon: an interpreter that exits while it runs (a load that failed before fuse_rope_ joined
    # it) waits for it rather than unwinding it inside Triton's C++; the commands' os._exit ends it at once
    thread = threading.Thread(target=launch, name="nli_qlora-triton-warm-up", daemon=False)
    thread.failed = None  # the exception the launch met, if any
    _WARMING = thread
    thread.start()
    return thread


def wait_warm_up() -> None:
    """Join warm_up_meanwhile's thread, if one is running (at once if it has ended)."""
    global _WARMING
    thread, _WARMING = _WARMING, None
    if thread is not None:
        thread.join()


def kernel_applies(q, k, cos, sin, capturing: bool) -> bool:
    """Whether this call may run the kernel: the plain layout, one dtype, a device Triton runs on,
    and inside a capture only a specialization already loaded (forward, and backward if it will run)."""
    if not (q.dim() == k.dim() == 4 and cos.dim() == sin.dim() == 3 and cos.shape == sin.shape
            and q.shape[2] > 1  # one position: torch calls any row stride contiguous, the kernel reads it
            and not (cos.requires_grad or sin.requires_grad)  # the kernel gives them no gradient
            and q.shape[-1] == k.shape[-1] == cos.shape[-1] and q.shape[-1] % 2 == 0
            and cos.shape[0] in (1, q.shape[0]) and cos.shape[1] == q.shape[2] == k.shape[2]
            and q.dtype == k.dtype == cos.dtype == sin.dtype
            and q.device == k.device == cos.device == sin.device):
        return False
    if not runs_on(q.device) or (q.device.type == "cpu" and q.dtype != torch.float32):
        return False  # (Triton's interpreter returns garbage for bfloat16: float32 only there)
    if capturing:
        key = _key(q, k, cos)
        grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
        return key in _RAN_FORWARD and (not grad or key in _RAN_BACKWARD)
    return True


def _dispatcher(original):
    @functools.wraps(original)
    def apply_rotary_pos_emb(q, k, cos, sin, *args, **kwargs):
        if (torch.compiler.is_compiling() or args or kwargs or not _INSIDE.get()
                or not kernel_applies(q, k, cos, sin, capturing(q))):
            return original(q, k, cos, sin, *args, **kwargs)
        return _Rope.apply(q, k, cos, sin)
    apply_rotary_pos_emb.nli_original = original
    return apply_rotary_pos_emb


@torch.no_grad()
def computes_rotary(fn) -> bool:
    """Whether a family's apply_rotary_pos_emb(q, k, cos, sin) is the kernel's formula (float32 probe)."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 1, 5, 8, generator=g)
    angles = torch.rand(2, 5, 4, generator=g) * 6
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    try:
        own = fn(q, k, cos, sin)
    except Exception:  # another signature or layout: not the plain function
        return False
    want = reference(q, k, cos, sin)
    return (isinstance(own, tuple) and len(own) == 2
            and all(o.shape == w.shape and torch.allclose(o, w, rtol=1e-5, atol=1e-6) for o, w in zip(own, want)))


@functools.cache
def _rotary_globals(cls: type) -> dict | None:
    """The module globals an attention class's forward reads apply_rotary_pos_emb from, if it does
    (once per class: a model has thousands of modules of a few dozen classes)."""
    forward = inspect.unwrap(cls.forward)
    code = getattr(forward, "__code__", None)
    if code is None or NAME not in code.co_names or not callable(forward.__globals__.get(NAME)):
        return None
    return forward.__globals__


def _install(scope: dict) -> bool:
    """Put the dispatcher in place of the family's function, once; False if the function is not the formula."""
    current = scope[NAME]
    if hasattr(current, "nli_original"):
        return True
    if not computes_rotary(current):
        return False
    scope[NAME] = _dispatcher(current)
    return True


def _marked_forward(self, *args, **kwargs):
    """The module's own forward (the class's, or what an instance had in its place) with the kernel on.
    A method bound to the module, not a closure: a deep copy of the model binds it to the copy."""
    if torch.compiler.is_compiling():  # a compiled layer traces transformers' rotary code: inductor fuses it
        return _inner(self, args, kwargs)
    token = _INSIDE.set(True)
    try:
        return _inner(self, args, kwargs)
    finally:
        _INSIDE.reset(token)


def _inner(self, args, kwargs):
    hook = self._nli_rope_inner  # (plain attribute reads and calls: dynamo traces them without a break)
    return hook(*args, **kwargs) if hook is not None else type(self).forward(self, *args, **kwargs)


def _mark(module: torch.nn.Module) -> None:
    module._nli_rope_inner = vars(module).get("forward")  # a hook put in the class's place, or None
    module.forward = types.MethodType(_marked_forward, module)


def _marked(module: torch.nn.Module) -> bool:
    """Marked, and not since wrapped by something else (whose wrapper must not be dropped)."""
    return getattr(vars(module).get("forward"), "__func__", None) is _marked_forward


def _unmark(module: torch.nn.Module) -> None:
    inner = vars(module).pop("_nli_rope_inner", None)
    if inner is None:
        del module.forward
    else:
        module.forward = inner


def fuse_rope_(model: torch.nn.Module, on: bool = True) -> int:
    """Mark, in place, every attention module whose family's rotary embedding the kernel computes; the
    count. `on=False` unmarks (the benchmarks reuse one model across cases). Needs liger-kernel where
    the kernel can run; on a CPU nothing is marked (a GPU-trained checkpoint scores there without it)."""
    wait_warm_up()  # the model has loaded: the thread's launches end before any of the run's own
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    if on and not runs_on(device):
        on = False
    if on:
        liger_rope()
    checked: dict[int, bool] = {}
    count = 0
    for module in model.modules():
        scope = _rotary_globals(type(module))
        if scope is None:
            continue
        if not on:
            if _marked(module):
                _unmark(module)
            continue
        if id(scope) not in checked:
            checked[id(scope)] = _install(scope)
        if checked[id(scope)]:
            if not _marked(module):
                _mark(module)
            count += 1
    return count


def fused_rope_count(model: torch.nn.Module) -> int:
    """How many attention modules fuse_rope_ marked (what run_start records: 0 without --fused-rope,
    and on a CPU unless Triton's interpreter is on)."""
    return sum(1 for m in model.modules() if _marked(m))
