"""Probe: CUDA's initialization on a thread while transformers, peft and bitsandbytes import, against in sequence."""
import sys, time, threading
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
mode = sys.argv[1]
done = {}
def init():
    a = time.perf_counter(); torch.cuda.init(); b = time.perf_counter()
    torch.empty(1, device="cuda"); torch.cuda.synchronize(); c = time.perf_counter()
    done.update(lazy=b - a, first_alloc=c - b)
if mode == "thread":
    th = threading.Thread(target=init); th.start()
else:
    init()
import nli_qlora, transformers, peft, bitsandbytes
from transformers import LlamaForCausalLM
t2 = time.perf_counter()
if mode == "thread":
    th.join()
t3 = time.perf_counter()
print(mode, "torch", round(t1 - t0, 2), "rest", round(t2 - t1, 2), "join", round(t3 - t2, 2), "total", round(t3 - t0, 2),
      {k: round(v, 3) for k, v in done.items()})
