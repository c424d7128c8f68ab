"""The fast step's 8-bit AdamW kernel (training.adamw8bit_kernel) against bitsandbytes' CUDA kernel, on a GPU.

Each step starts both from the same state (bitsandbytes' own, copied) and the same gradient, so what differs is
one update's arithmetic: the moments' codes, the block absmax and the weights. Flat buffers of SmolLM2's and
Phi-2's LoRA sizes (the published r=32), paged states, gradients of several scales, a zero block (the buffer's
padding), weight decay on. Then a drift of 200 steps run apart, and the update's time both ways.

    python3 scripts/check_adamw8bit.py [--steps 20]      (scripts/gpu_smoke.sh runs it; exit 1 on a mismatch)

One JSON line per size; the bounds asserted are in `check`."""

from __future__ import annotations

import argparse
import json
import sys
import time

import bitsandbytes as bnb
import torch

from nli_qlora.training.adamw8bit_kernel import QBLOCK, DeviceAdamW8bit

# the fast step's flat buffers at r=32 on every linear and the head (the presets): SmolLM2's 11,360,256 values,
# Phi-2's the published 17,448,960 (their weights' sizes are multiples of ALIGN, so no padding)
SIZES = {"smollm2": 11_360_256, "phi-2": 17_448_960}


def pair(n: int, lr: float):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(n, device="cuda") * 0.02)
    q = torch.nn.Parameter(p.detach().clone())
    theirs = bnb.optim.PagedAdamW8bit([p], lr=lr, weight_decay=0.01)
    ours = bnb.optim.PagedAdamW8bit([q], lr=lr, weight_decay=0.01)
    return p, q, theirs, ours, DeviceAdamW8bit.for_optimizer(ours, q)


def gradient(n: int, step: int) -> torch.Tensor:
    g = torch.randn(n, device="cuda") * (1e-3, 1.0, 1e-6, 3e-2)[step % 4]
    g[QBLOCK * 3:QBLOCK * 4] = 0.0
    return g


def check(name: str, n: int, steps: int) -> dict:
    lr, finite = 1e-3, torch.ones((), device="cuda")
    p, q, theirs, ours, stepper = pair(n, lr)
    assert stepper is not None, "the kernel declined bitsandbytes' PagedAdamW8bit"
    worst = {"codes_differ": 0.0, "code_step": 0, "absmax_rel": 0.0, "update_rel": 0.0}
    for step in range(steps):
        g = gradient(n, step)
        p.grad, q.grad = g, g.clone()
        if theirs.state[p]:  # from the same state: bitsandbytes' after its previous step
            for k, v in theirs.state[p].items():
                if isinstance(v, torch.Tensor):
                    ours.state[q][k].copy_(v)
            ours.state[q]["step"] = theirs.state[p]["step"]
            q.data.copy_(p.data)
        before = p.detach().clone()
        theirs.step()
        stepper.launch(finite, finite)
        stepper.advance()
        torch.cuda.synchronize()
        a, b = theirs.state[p], ours.state[q]
        for key in ("state1", "state2"):
            diff = (a[key].int() - b[key].int()).abs()
            diff = torch.minimum(diff, 256 - diff)  # 255 and 0 are neighbours through the sign fix's wrap
            worst["codes_differ"] = max(worst["codes_differ"], (diff > 0).float().mean().item())
            worst["code_step"] = max(worst["code_step"], int(diff.max()))
        for key in ("absmax1", "absmax2"):
            rel = ((a[key] - b[key]).abs() / a[key].abs().clamp_min(1e-30)).max().item()
            worst["absmax_rel"] = max(worst["absmax_rel"], rel)
        # the weights' change, relative, beyond one unit in the last place of the new weight (which its own
        # rounding may cost; weights that grew to 1 or more put that above a small change)
        change = p.detach() - before
        ulp = torch.nextafter(p.detach().abs(), torch.tensor(float("inf"), device="cuda")) - p.detach().abs()
        excess = ((q.detach() - before - change).abs() - ulp).clamp_min(0)
        rel = (excess / (change.abs() + lr / 100)).max().item()
        worst["update_rel"] = max(worst["update_rel"], rel)
    # apart: each on its own state from one start
    p, q, theirs, ours, stepper = pair(n, lr)
    for step in range(200):
        g = gradient(n, step)
        p.grad, q.grad = g, g.clone()
        theirs.step()
        stepper.launch(finite, finite)
        stepper.advance()
    drift = ((p - q).abs().max() / lr).item()
    # time: 50 updates each way, as the fast step launches them, then a synchronize
    times = {}
    for way, op in (("bitsandbytes_ms", theirs.step), ("kernel_ms", lambda: (stepper.launch(finite, finite),
                                                                              stepper.advance()))):
        for _ in range(5):
            op()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(50):
            op()
        torch.cuda.synchronize()
        times[way] = round((time.perf_counter() - t0) / 50 * 1e3, 4)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(50):
        stepper.launch(finite, finite)
    end.record()
    torch.cuda.synchronize()
    times["kernel_gpu_ms"] = round(start.elapsed_time(end) / 50, 4)
    return {"size": name, "params": n, "steps": steps, **{k: round(v, 8) if isinstance(v, float) else v
                                                          for k, v in worst.items()},
            "drift_200_steps_over_lr": round(drift, 4), **times}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    ok = True
    for name, n in SIZES.items():
        result = check(name, n, args.steps)
        print(json.dumps(result), flush=True)
        # one update from one state: codes the same but for float rounding at a midpoint (one code), absmax and
        # the weights' change to float rounding
        ok &= (result["codes_differ"] < 1e-4 and result["code_step"] <= 1 and result["absmax_rel"] < 1e-5
               and result["update_rel"] < 1e-3)
    print("PASS" if ok else "FAIL: the kernel's update is not bitsandbytes' (bounds in scripts/check_adamw8bit.py)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
