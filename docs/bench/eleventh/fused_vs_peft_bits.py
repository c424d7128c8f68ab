import torch, peft, types
from nli_qlora.model.fused_lora import fused_forward, LoraUpdate
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(2560, 2560, bias=True)).cuda().to(torch.bfloat16)
pm = peft.get_peft_model(m, peft.LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0, target_modules=["0"])).to(torch.bfloat16)
layer = pm.base_model.model[0]
with torch.no_grad():
    for p in (layer.lora_A["default"].weight, layer.lora_B["default"].weight): p.normal_(0, 0.05)
x = torch.randn(8, 64, 2560, device="cuda", dtype=torch.bfloat16)
with torch.no_grad():
    a = layer(x)
    layer.forward = types.MethodType(fused_forward, layer)
    b = layer(x)
print("elements differing", (a != b).sum().item(), "of", a.numel(), "max abs diff", (a.float() - b.float()).abs().max().item())
base = layer.base_layer(x); t = x @ layer.lora_A["default"].weight.t()
one = torch.addmm(base.reshape(-1, 2560), t.reshape(-1, 32), layer.lora_B["default"].weight.t(), alpha=2.0)
two = base.reshape(-1, 2560) + (t.reshape(-1, 32) @ layer.lora_B["default"].weight.t()) * 2.0
print("addmm vs mm+add differing", (one != two).sum().item())
# On one H200 (torch 2.11.0+cu130), 2026-12-02: "elements differing 0 of 1310720 max abs diff 0.0",
# "addmm vs mm+add differing 0". On this project's CPU (torch 2.13) the two round differently.
