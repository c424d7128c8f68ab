"""The pieces of a step, one at a time, each beside the alternative it is chosen over:

- the 4-bit NF4 linear (forward; backward = the input gradient, the base being frozen) against bf16,
  at Phi-2's shapes;
- a LoRA linear (peft's adapter on a bitsandbytes Linear4bit), forward and backward;
- the label head (three logits at the answer position: nli_qlora.training.scoring's `label` loss) against
  the full vocabulary projected at every position (its `lm` loss);
- bitsandbytes' (paged) 8-bit AdamW against torch AdamW (fused on CUDA) over Phi-2's LoRA set.

Each timed round runs the operation KERNEL_REPS times and then synchronizes once, so launch and
sync costs are amortized as in a real step; extra_info.op_ms is the time of one operation."""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace

import pytest
import torch

from kernels_bench import sizes
from kernels_bench.conftest import round_times, synchronize

DTYPE = torch.bfloat16


def timed(benchmark, op, device: torch.device) -> float:
    """Median seconds of one `op` over the measured rounds (warm-up rounds excluded)."""
    own: list[float] = []

    def round_():
        t0 = time.perf_counter()
        for _ in range(sizes.KERNEL_REPS):
            op()
        synchronize(device)
        own.append(time.perf_counter() - t0)

    benchmark.pedantic(round_, rounds=sizes.KERNEL_ROUNDS, warmup_rounds=sizes.KERNEL_WARMUP)
    return statistics.median(round_times(benchmark, own)) / sizes.KERNEL_REPS


class Holder(torch.nn.Module):
    """One layer in a module that quantizes and takes adapters like a loaded 4-bit model."""
    is_loaded_in_4bit = True  # peft then wraps a Linear4bit with its bitsandbytes LoRA layer

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    def get_output_embeddings(self):
        return None


def linear(shape: tuple[int, int], impl: str, device: torch.device) -> torch.nn.Module:
    """A frozen Phi-2-shaped linear layer, 4-bit NF4 (double-quantized) as the loop quantizes, or bf16."""
    from nli_qlora.config import RunConfig
    from nli_qlora.model.load import quantize_linears_

    torch.manual_seed(0)
    holder = Holder(torch.nn.Linear(*shape, bias=True, dtype=DTYPE, device=device))
    if impl in ("nf4", "nf4+lora"):
        quantize_linears_(holder, RunConfig(quantization="nf4", double_quant=True), DTYPE)
    if impl == "nf4+lora":
        from peft import LoraConfig, inject_adapter_in_model
        inject_adapter_in_model(LoraConfig(r=sizes.LORA_RANK, lora_alpha=2 * sizes.LORA_RANK, lora_dropout=0.05,
                                           target_modules=["layer"]), holder)
        for p in holder.parameters():
            if p.requires_grad:  # peft keeps adapters in float32 under a bf16 base (autocast_adapter_dtype)
                p.data = p.data.float()
    for name, p in holder.named_parameters():
        p.requires_grad_("lora_" in name)
    return holder.train()


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("impl", ["nf4", "bf16"])
@pytest.mark.parametrize("tokens", sizes.LINEAR_TOKENS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("shape", sizes.LINEAR_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def bench_linear(benchmark, shape, tokens, impl, direction, device, case_memory):
    layer = linear(shape, impl, device).layer
    x = torch.randn(tokens, shape[0], dtype=DTYPE, device=device, requires_grad=direction == "backward")
    if direction == "forward":
        def op():
            with torch.no_grad():
                layer(x)
    else:
        y = layer(x)
        grad = torch.randn_like(y)

        def op():
            torch.autograd.grad(y, x, grad, retain_graph=True)  # the base is frozen: input gradient only
    case_memory.reset()
    seconds = timed(benchmark, op, device)
    flops = 2 * tokens * shape[0] * shape[1]
    benchmark.extra_info.update({"kind": "linear", "impl": impl, "direction": direction, "in_features": shape[0],
                                 "out_features": shape[1], "tokens": tokens, "dtype": str(DTYPE)[6:],
                                 "op_ms": round(1e3 * seconds, 4), "tflops_per_s": round(flops / seconds / 1e12, 3),
                                 "peak_gpu_gb": case_memory.peak_gb()})


@pytest.mark.parametrize("tokens", sizes.LINEAR_TOKENS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("shape", sizes.LINEAR_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def bench_lora_linear(benchmark, shape, tokens, device, case_memory):
    layer = linear(shape, "nf4+lora", device).layer
    x = torch.randn(tokens, shape[0], dtype=DTYPE, device=device)
    grad = torch.randn(tokens, shape[1], dtype=DTYPE, device=device)

    def op():
        layer(x).backward(grad)  # forward, then the adapters' gradients through the frozen 4-bit base

    case_memory.reset()
    seconds = timed(benchmark, op, device)
    benchmark.extra_info.update({"kind": "lora_linear", "impl": "nf4+lora", "direction": "forward+backward",
                                 "in_features": shape[0], "out_features": shape[1], "tokens": tokens,
                                 "rank": sizes.LORA_RANK, "op_ms": round(1e3 * seconds, 4),
                                 "peak_gpu_gb": case_memory.peak_gb()})


class _FixedDecoder(torch.nn.Module):
    """Stands where the decoder stands and returns given final hidden states, so that only the
    scoring head of nli_qlora.training.scoring.LabelScorer is timed."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden

    def forward(self, input_ids, **kwargs):
        return SimpleNamespace(last_hidden_state=self.hidden)


class _HeadOnly(torch.nn.Module):
    def __init__(self, hidden: torch.Tensor, head: torch.nn.Linear):
        super().__init__()
        self.decoder = _FixedDecoder(hidden)
        self.head = head

    def get_decoder(self):
        return self.decoder

    def get_output_embeddings(self):
        return self.head


@pytest.mark.parametrize("loss", ["label", "lm"], ids=["label3-at-answer", "full-vocab-every-position"])
@pytest.mark.parametrize("bt", sizes.HEAD_BATCHES, ids=lambda bt: f"b{bt[0]}-seq{bt[1]}")
def bench_head(benchmark, bt, loss, device, case_memory):
    from nli_qlora.training.scoring import LabelScorer

    (rows, width), (hidden, vocab) = bt, sizes.HEAD_SHAPE
    g = torch.Generator(device="cpu").manual_seed(0)
    h = torch.randn(rows, width, hidden, generator=g).to(device, DTYPE).requires_grad_(True)
    head = torch.nn.Linear(hidden, vocab, bias=True, dtype=DTYPE, device=device).requires_grad_(False)
    scorer = LabelScorer(_HeadOnly(h, head), label_ids=[11, 12, 13])
    batch = {"input_ids": torch.zeros(rows, width, dtype=torch.long), "attention_mask": torch.ones(rows, width),
             "answer_pos": torch.full((rows,), width - 1), "labels": torch.randint(0, 3, (rows,), generator=g),
             "lm_labels": torch.randint(0, vocab, (rows, width), generator=g)}
    batch = {k: v.to(device) for k, v in batch.items()}

    def op():
        value, _ = scorer.loss(batch, loss)
        value.backward()
        h.grad = None

    case_memory.reset()
    seconds = timed(benchmark, op, device)
    benchmark.extra_info.update({"kind": "head", "loss": loss, "rows": rows, "width": width, "hidden": hidden,
                                 "vocab": vocab, "op_ms": round(1e3 * seconds, 4),
                                 "peak_gpu_gb": case_memory.peak_gb()})


def lora_parameters(device: torch.device) -> list[torch.nn.Parameter]:
    """Phi-2's LoRA set in the published shapes, float32 as peft keeps it, with gradients filled."""
    r, hidden, vocab = sizes.LORA_RANK, sizes.OPTIM_HIDDEN, sizes.OPTIM_VOCAB
    shapes = [(r, hidden), (hidden, r)] * (sizes.OPTIM_LAYERS * sizes.OPTIM_TARGETS) + [(r, hidden), (vocab, r)]
    g = torch.Generator(device="cpu").manual_seed(0)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=g).to(device) * 0.01)
        p.grad = torch.randn(shape, generator=g).to(device) * 1e-3
        params.append(p)
    return params


@pytest.mark.parametrize("update", ["bitsandbytes", "kernel"])
def bench_flat_update(benchmark, update, device, case_memory):
    """The fast step's update: paged 8-bit AdamW over one flat buffer holding Phi-2's LoRA set (the step's
    FlatParams), by bitsandbytes' own step (its syncs included) or by our kernel (training.adamw8bit_kernel),
    launched as the step launches it and ended by a synchronize."""
    from nli_qlora.config import RunConfig
    from nli_qlora.infra.quiet import quiet_paged_fallback
    from nli_qlora.training.adamw8bit_kernel import DeviceAdamW8bit
    from nli_qlora.training.optim import build_optimizer
    from nli_qlora.training.step import FlatParams

    params = lora_parameters(device)
    grads = [p.grad for p in params]
    flat = FlatParams(params)
    for view, g in zip(flat.grads, grads):
        view.copy_(g)
    quiet_paged_fallback()
    opt, _ = build_optimizer(RunConfig(optimizer="paged_adamw_8bit"), [flat.param])
    stepper = DeviceAdamW8bit.for_optimizer(opt, flat.param) if update == "kernel" else None
    if update == "kernel" and stepper is None:
        pytest.skip("the fast step takes the kernel on CUDA only")
    finite = torch.ones((), device=device)

    def op():
        if stepper is None:
            opt.step()
        else:
            stepper.launch(finite, finite)
            stepper.advance()

    op()  # the state allocated (and the kernel compiled) before the peak is reset
    synchronize(device)
    case_memory.reset()
    seconds = timed(benchmark, op, device)
    benchmark.extra_info.update({"kind": "optimizer", "optimizer": "paged_adamw_8bit", "update": update,
                                 "params": flat.param.numel(), "tensors": 1, "op_ms": round(1e3 * seconds, 4),
                                 "peak_gpu_gb": case_memory.peak_gb()})


@pytest.mark.parametrize("optimizer", ["paged_adamw_8bit", "adamw_8bit", "torch_adamw"])
def bench_optimizer(benchmark, optimizer, device, case_memory):
    from nli_qlora.config import RunConfig
    from nli_qlora.infra.quiet import quiet_paged_fallback
    from nli_qlora.training.optim import build_optimizer

    params = lora_parameters(device)
    if optimizer == "torch_adamw":
        opt = torch.optim.AdamW(params, lr=2.5e-5, fused=device.type == "cuda")
    else:
        quiet_paged_fallback()
        opt, _ = build_optimizer(RunConfig(optimizer=optimizer), params)
    opt.step()  # allocate the state before the peak is reset: steady-state steps are what is timed
    synchronize(device)
    case_memory.reset()
    seconds = timed(benchmark, opt.step, device)
    count = sum(p.numel() for p in params)
    benchmark.extra_info.update({"kind": "optimizer", "optimizer": optimizer, "fused": optimizer == "torch_adamw"
                                 and device.type == "cuda", "params": count, "tensors": len(params),
                                 "op_ms": round(1e3 * seconds, 4), "peak_gpu_gb": case_memory.peak_gb()})
