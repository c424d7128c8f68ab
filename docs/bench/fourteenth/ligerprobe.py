"""Issue 14, fourteenth round: Liger-Kernel's Triton rotary embedding and SiLU*up against transformers'
eager code, one op at a time, on the GPU: kernels forward+backward, GPU and host time a call, the first
call (Triton compiles; TRITON_CACHE_DIR decides cold or warm), and the largest differences.

    python docs/bench/fourteenth/ligerprobe.py
"""
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile

t = time.perf_counter()
import triton  # noqa: E402
t_triton = time.perf_counter() - t
t = time.perf_counter()
from liger_kernel.ops.rope import LigerRopeFunction  # noqa: E402
from liger_kernel.ops.swiglu import LigerSiLUMulFunction  # noqa: E402
t_liger = time.perf_counter() - t
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb  # noqa: E402

print(json.dumps({"triton": triton.__version__, "import_triton_s": round(t_triton, 3),
                  "import_liger_ops_s": round(t_liger, 3)}))
dev = torch.device("cuda")


def rope_inputs(b, s, hq, hk, d, rd, dtype, seed=0):
    """The grouped projection's output [B, T, (hq + 2 hk) d] as leaf; q and k as the attention views it."""
    g = torch.Generator(device=dev).manual_seed(seed)
    qkv = torch.randn(b, s, (hq + 2 * hk) * d, device=dev, dtype=dtype, generator=g)
    inv = 1.0 / (10000 ** (torch.arange(0, rd, 2, device=dev).float() / rd))
    f = torch.outer(torch.arange(s, device=dev).float(), inv)
    emb = torch.cat((f, f), -1)[None].expand(b, s, rd)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)

    def build(leaf):
        q, k, _ = leaf.split((hq * d, hk * d, hk * d), dim=-1)
        return (q.view(b, s, hq, d).transpose(1, 2),
                k.view(b, s, hk, d).transpose(1, 2), cos, sin)
    return qkv, build


def hf_rope(q, k, cos, sin, rd):
    if rd == q.shape[-1]:
        return apply_rotary_pos_emb(q, k, cos, sin)
    qr, qp = q[..., :rd], q[..., rd:]
    kr, kp = k[..., :rd], k[..., rd:]
    qr, kr = apply_rotary_pos_emb(qr, kr, cos, sin)
    return torch.cat((qr, qp), -1), torch.cat((kr, kp), -1)


def liger_rope(q, k, cos, sin, rd):
    if rd == q.shape[-1]:
        return LigerRopeFunction.apply(q, k, cos, sin)
    qr, qp = q[..., :rd], q[..., rd:]
    kr, kp = k[..., :rd], k[..., rd:]
    qr, kr = LigerRopeFunction.apply(qr, kr, cos, sin)
    return torch.cat((qr, qp), -1), torch.cat((kr, kp), -1)


def measure(fn, make, n=200):
    """fn(*inputs) -> outputs; forward + backward of sum(out * w). make() -> (base, build): the inputs are
    views of base + 0 (a non-leaf, as a projection's output is), laid out as the model lays them out."""
    base, build = make()
    leaf = base.detach().requires_grad_()

    def once():
        leaf.grad = None
        outs = fn(*build(leaf + 0))
        loss = sum((o.float() * (i + 1)).sum() for i, o in enumerate(outs))
        loss.backward()
        return [o.detach() for o in outs], [leaf.grad]
    torch.cuda.synchronize()
    t = time.perf_counter()
    once()
    torch.cuda.synchronize()
    first = time.perf_counter() - t
    for _ in range(5):
        once()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        once()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA")]
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        once()
    host = (time.perf_counter() - t) / n
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t) / n
    return once(), {"first_call_ms": round(first * 1e3, 2), "kernels": len(kernels),
                    "kernel_names": sorted({e.name[:50] for e in kernels})[:12],
                    "host_ms": round(host * 1e3, 4), "wall_ms": round(wall * 1e3, 4)}


def diff(a, b):
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))


for name, (b, s, hq, hk, d, rd) in {"smollm2": (8, 64, 9, 3, 64, 64), "phi-2": (8, 64, 32, 32, 80, 32)}.items():
    for dtype in (torch.bfloat16, torch.float32):
        make = lambda: rope_inputs(b, s, hq, hk, d, rd, dtype)  # noqa: E731
        # cos/sin are passed whole: the model's rotary module returns [B, T, rd]
        (ho, hg), hm = measure(lambda q, k, c, si: hf_rope(q, k, c, si, rd), make)
        (lo, lg), lm = measure(lambda q, k, c, si: liger_rope(q, k, c, si, rd), make)
        print(json.dumps({"op": "rope", "shape": name, "dtype": str(dtype), "transformers": hm, "liger": lm,
                          "max_abs_diff_out": diff(ho, lo), "max_abs_diff_grad": diff(hg, lg)}))

for name, (n, inter) in {"smollm2": (512, 1536)}.items():
    for dtype in (torch.bfloat16, torch.float32):
        def make():
            g = torch.Generator(device=dev).manual_seed(1)
            gu = torch.randn(n, 2 * inter, device=dev, dtype=dtype, generator=g)
            return gu, lambda leaf: leaf.split(inter, dim=1)  # the grouped projection's output: two column slices
        (ho, hg), hm = measure(lambda a, b_: (torch.nn.functional.silu(a) * b_,), make)
        (lo, lg), lm = measure(lambda a, b_: (LigerSiLUMulFunction.apply(a, b_),), make)
        print(json.dumps({"op": "silu*up", "shape": name, "dtype": str(dtype), "transformers": hm, "liger": lm,
                          "max_abs_diff_out": diff(ho, lo), "max_abs_diff_grad": diff(hg, lg)}))
