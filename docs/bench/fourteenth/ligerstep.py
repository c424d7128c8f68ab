"""scripts/profile_step.py with Liger-Kernel's rotary embedding (and SiLU*up) patched into transformers'
Llama code for the whole process: a probe of what the kernels would save in the real captured step.

    python docs/bench/fourteenth/ligerstep.py none|rope|rope+swiglu PROFILE_STEP_ARGS...
"""
import runpy
import sys

mode = sys.argv.pop(1)
if mode != "none":
    import transformers.models.llama.modeling_llama as ml
    if "rope" in mode:
        from liger_kernel.ops.rope import LigerRopeFunction
        ml.apply_rotary_pos_emb = lambda q, k, cos, sin, unsqueeze_dim=1: LigerRopeFunction.apply(q, k, cos, sin)
    if "swiglu" in mode:
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction

        def forward(self, x):
            return self.down_proj(LigerSiLUMulFunction.apply(self.gate_proj(x), self.up_proj(x)))
        ml.LlamaMLP.forward = forward
sys.argv[0] = "scripts/profile_step.py"
print("mode", mode, flush=True)
runpy.run_path("scripts/profile_step.py", run_name="__main__")
