# The 8-bit AdamW kernel in Triton's interpreter against bitsandbytes' CPU update, side by side on this 2-core CPU
# (twenty-first round; run as /tmp/t5.py: python interpreter_update.py). Columns: values, ROWS a program, seconds
# an update by the kernel, seconds by bitsandbytes' CPU step (mean of 3 after one warm-up). Output: interpreter-update-cpu.log
import os; os.environ["TRITON_INTERPRET"]="1"
import torch, time, bitsandbytes as bnb
from nli_qlora.training.adamw8bit_kernel import DeviceAdamW8bit, ROWS
import nli_qlora.training.adamw8bit_kernel as K
for n in (2048*60, 2048*400):
  for rows in (64, 256, 1024):
    K.ROWS["cpu"] = rows
    p = torch.nn.Parameter(torch.randn(n)); p.grad = torch.randn(n)
    o = bnb.optim.AdamW8bit([p]); d = DeviceAdamW8bit.for_optimizer(o, p); f = torch.ones(())
    d.launch(f, f)
    t = time.time(); 
    for _ in range(3): d.launch(f, f)
    k = (time.time()-t)/3
    t = time.time()
    for _ in range(3): o.step()
    print(n, rows, "kernel", round(k,4), "bnb cpu", round((time.time()-t)/3, 4))
