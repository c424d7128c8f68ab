"""Where the first launches of Liger's rotary kernel go in a process (Triton's disk cache warm): the
first call (driver, launcher, kernel loaded), a new batch size (another specialization), a seen one."""
import cProfile
import pstats
import sys
import time

import torch

from nli_qlora.model import fused_rope

dev = torch.device("cuda")
torch.zeros(1, device=dev)
fused_rope.liger_rope()


def call(b, t=64, hq=9, hk=3, d=64, grad=False):
    q = torch.randn(b, hq, t, d, device=dev, dtype=torch.bfloat16, requires_grad=grad)
    k = torch.randn(b, hk, t, d, device=dev, dtype=torch.bfloat16, requires_grad=grad)
    cos = torch.randn(b, t, d, device=dev, dtype=torch.bfloat16)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.set_grad_enabled(grad):
        out = fused_rope._Rope.apply(q, k, cos, cos)
        if grad:
            sum(o.float().sum() for o in out).backward()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


prof = cProfile.Profile()
prof.enable()
first = call(256)
prof.disable()
print("first call (no grad, batch 256)", round(first * 1e3, 1), "ms")
for label, b, g in (("new batch size 100", 100, False), ("seen batch 256", 256, False), ("new batch 8 with grad", 8, True),
                    ("new batch 3 with grad", 3, True), ("seen batch 8 with grad", 8, True)):
    print(label, round(call(b, grad=g) * 1e3, 2), "ms")
pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(18)
