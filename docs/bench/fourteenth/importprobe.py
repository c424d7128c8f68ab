"""How long Liger's rotary kernel takes to import in a process that has torch, transformers, peft and
bitsandbytes already (as every nli_qlora command has): through its package, or its one module alone."""
import importlib.util
import sys
import time

import bitsandbytes  # noqa: F401
import peft  # noqa: F401
import torch  # noqa: F401
import transformers.models.llama.modeling_llama  # noqa: F401

how = sys.argv[1]
t = time.perf_counter()
import triton  # noqa: E402,F401
import triton.language  # noqa: E402,F401
t_triton = time.perf_counter() - t
t = time.perf_counter()
if how == "package":
    from liger_kernel.ops.rope import LigerRopeFunction  # noqa: F401
else:
    spec = importlib.util.find_spec("liger_kernel")
    path = spec.submodule_search_locations[0] + "/ops/rope.py"
    s = importlib.util.spec_from_file_location("nli_liger_rope", path)
    m = importlib.util.module_from_spec(s)
    s.loader.exec_module(m)
print(how, "triton", round(t_triton, 3), "s; rope", round(time.perf_counter() - t, 3), "s", flush=True)
