"""--fused-projections: the adapted linears of a decoder layer that read one tensor, computed together.

q, k and v read one normed hidden state, and so do gate and up (Llama) or q, k, v and fc1 (Phi:
model.families, the `group` of each linear). peft runs each as a layer of its own: a base matmul, a
dropout and two LoRA matmuls forward, and in the backward pass the base's input gradient, three LoRA
matmuls, the dropout's mask and autograd's sum of the members' input gradients. At batch 8 a step is
bound by the number of such small kernels (docs/benchmarks.md, issue 14). Here a group runs as one
autograd function:
- the frozen bases as one matmul over their weights concatenated (each member's weight becomes a
  row slice of that one tensor: no memory added), biases included;
- the members' dropouts as one kernel over the input repeated once per member (each member still
  draws a mask of its own, as in peft: on a GPU our Triton kernel from a seed per group and forward,
  model.lora_dropout; elsewhere torch's), and their LoRA A as one batched matmul;
- each member's LoRA B added into its columns of the output in place, the scale in the matmul's alpha;
  neighbours of one width (k and v, gate and up; Phi's q, k and v) as one batched matmul.
Backward: one batched matmul for every A's gradient; the adapters' input gradients through their masks,
summed over the members, in one Triton kernel (model.lora_input_grad; torch's batched matmul, masked
scale and sum where Triton cannot run); one matmul for the bases' input gradient with that sum folded
in; B's two gradients per run of neighbours of one width, or per member.

Every other adapted linear of a decoder layer (o_proj, down_proj; Phi's dense and fc2) runs as a
group of one: the same kernels forward, and backward its adapter's input gradient rides in the base's
matmul where --fused-lora leaves autograd an add. The trainer lays the adapters' bfloat16 working
copies out group by group (work_order, FlatParams), so a group's A's and a run's B's are one view
instead of a stacked copy each forward; and a Llama-style MLP reads its SiLU(gate)*up from the one
gate|up output (model.fused_swiglu). On one H200, SmolLM2's shapes at batch 8: 2,495 -> 2,196 kernels
a step and 9.6 -> 8.9 ms (docs/benchmarks.md, eighteenth round).

The same function as peft's, rounded as --fused-lora rounds (which it needs: the members' update is
that one) and, with dropout on, masks drawn in one call instead of one per member: other draws of the
same distribution. So runs with and without it train alike, not bit for bit, and a resume keeps the
run's setting.

Measured on one H200 (docs/benchmarks.md, ninth round), SmolLM2's shapes at batch 8: 5,433 -> 4,662
kernels a step and 16.8 -> 15.2 ms in the loop; Phi-2's 3,972 -> 3,405. Under --compile the layers
trace grouped_ops instead, and there it gains nothing (2,665 -> 2,904 kernels, the same step time):
inductor's own fusion of the per-layer update already does better.

How it meets transformers' code unchanged: the attention calls q_proj(x), k_proj(x), v_proj(x) in
turn. The first member called computes the whole group and leaves the others' outputs for them,
keyed by the very input tensor; they take them. A member called with another tensor, or where the
arithmetic is not plain (model.fused_lora's conditions), computes alone as --fused-lora does."""

from __future__ import annotations

import types

import torch

from nli_qlora.infra.errors import UserError
from nli_qlora.model import lora_dropout, lora_input_grad
from nli_qlora.model.families import family_of
from nli_qlora.model.fused_lora import fused_forward, is_lora_linear, plain_adapter
from nli_qlora.model.fused_rope import capturing, runs_on
from nli_qlora.model.fused_swiglu import fuse_swiglu_


class GroupedLora(torch.autograd.Function):
    """out = [x @ W^T + bias] with, in member i's columns, + scale_i * (drop_i(x) @ A_i^T) @ B_i^T."""

    @staticmethod
    def forward(ctx, x, weight, bias, p: float, scales: tuple, widths: tuple, seed: tuple | None, *ab):
        """seed: (model.lora_dropout.Seeds' values, this group's index) for its dropout kernel, or None."""
        g = len(widths)
        a, b = ab[:g], ab[g:]
        x2 = x.reshape(-1, x.shape[-1])
        out = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()
        stack = _stacked(a)  # [G, r, in]: a view of FlatParams' working copies (work_order), else a copy
        live = capturing(x2)
        if p > 0 and seed is not None and lora_dropout.applies(x2, g, *seed, live):
            xd, mask = lora_dropout.lora_dropout(x2, g, p, *seed, live)  # masks from the group's seed
        elif p > 0:  # one kernel, a mask per member: the input repeated G times (a broadcast view, not a copy)
            xd, mask = torch.native_dropout(x2.expand(g, *x2.shape), p, True)
        else:
            xd, mask = x2.expand(g, *x2.shape), None
        t = torch.bmm(xd, stack.transpose(1, 2))  # [G, N, r]
        runs = _runs(widths, scales)
        b_runs = [b[i] if k == 1 else _stacked(b[i:i + k]) for i, k, _ in runs]  # [w, r] or [k, w, r]
        for (i, k, col), bk in zip(runs, b_runs):
            w, s = widths[i], scales[i]
            if k == 1:
                out[:, col:col + w].addmm_(t[i], bk.t(), alpha=s)
            else:  # the run's columns as a [k, N, w] view: one batched matmul adds into them in place
                out[:, col:col + k * w].view(-1, k, w).transpose(0, 1).baddbmm_(t[i:i + k], bk.transpose(1, 2), alpha=s)
        ctx.save_for_backward(xd if p > 0 else x2, mask, t, weight, stack, *b_runs)
        ctx.p, ctx.scales, ctx.widths, ctx.runs, ctx.x_shape = p, scales, widths, runs, x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        xd, mask, t, weight, stack, *b_runs = ctx.saved_tensors
        g = len(ctx.widths)
        if ctx.p == 0:
            xd = xd.expand(g, *xd.shape)
        g2 = grad.reshape(-1, grad.shape[-1])
        dt = torch.empty_like(t)
        db = []
        for (i, k, col), bk in zip(ctx.runs, b_runs):  # beta=0: the empty values are never read
            w, s = ctx.widths[i], ctx.scales[i]
            if k == 1:
                gk = g2[:, col:col + w]
                dt[i].addmm_(gk, bk, beta=0, alpha=s)
                db.append(torch.addmm(bk, gk.t(), t[i], beta=0, alpha=s))
            else:
                gk = g2[:, col:col + k * w].reshape(-1, k, w).transpose(0, 1)  # [k, N, w], a view
                dt[i:i + k].baddbmm_(gk, bk, beta=0, alpha=s)
                db.extend(torch.baddbmm(bk, gk.transpose(1, 2), t[i:i + k], beta=0, alpha=s).unbind(0))
        da = torch.bmm(dt.transpose(1, 2), xd)
        dx = None
        if ctx.needs_input_grad[0]:  # the first layer's input takes none: the embeddings are frozen
            live = capturing(dt)
            if (ctx.p > 0 or g > 1) and lora_input_grad.applies(dt, stack, mask, live):  # products, masks, sum: one kernel
                dxl = lora_input_grad.lora_input_grad(dt, stack, mask, ctx.p, live)
            else:
                dxd = torch.bmm(dt, stack)
                if ctx.p > 0:
                    dxd = torch.ops.aten.native_dropout_backward(dxd, mask, 1.0 / (1.0 - ctx.p))
                dxl = dxd[0] if g == 1 else dxd.sum(0)
            dx = torch.addmm(dxl, g2, weight).view(ctx.x_shape)
        return (dx, None, None, None, None, None, None, *da.unbind(0), *db)


def _runs(widths: tuple, scales: tuple) -> list[tuple[int, int, int]]:
    """(first member, members, first column) of each run of neighbours with one width and one scale.

    A run of two or more computes its LoRA B products (forward, and both gradients) as one batched
    matmul over a strided view of its columns instead of one matmul per member: Llama's k and v (GQA:
    q is wider) and gate and up, Phi's q, k and v. At batch 8 each of those matmuls is a few
    microseconds of fixed cost (docs/benchmarks.md, issue 14, seventeenth round)."""
    runs, start, col = [], 0, 0
    for i in range(1, len(widths) + 1):
        if i == len(widths) or widths[i] != widths[start] or scales[i] != scales[start]:
            runs.append((start, i - start, col))
            col += (i - start) * widths[start]
            start = i
    return runs


def _stacked(ts) -> torch.Tensor:
    """ts as one [len(ts), *shape] tensor: a view where they lie side by side in one buffer, in order
    (FlatParams lays the working copies out so: work_order), else one stacked copy (a kernel)."""
    t0 = ts[0]
    n, storage = t0.numel(), t0.untyped_storage().data_ptr()
    if all(t.shape == t0.shape and t.dtype == t0.dtype and t.is_contiguous() and t.storage_offset() == t0.storage_offset() + i * n
           and t.untyped_storage().data_ptr() == storage for i, t in enumerate(ts)):
        return t0.as_strided((len(ts), *t0.shape), (n, *t0.stride()))
    return torch.stack(ts)


def work_order(model: torch.nn.Module, params: list[torch.nn.Parameter]) -> list[int] | None:
    """The order of `params` for FlatParams' working copies: each group's LoRA A weights side by side in
    the members' order, then its B weights, the rest as they come; None without groups. Then a group's
    A's (and a run's B's) are one view, not a copy each forward: two to four kernels fewer a layer."""
    index = {id(p): i for i, p in enumerate(params)}
    grouped: dict[int, list[int]] = {}  # the first of a group's weights met -> the group's weights in order
    for module in model.modules():
        group = getattr(module, "_nli_group", (None, 0))[0]
        if group is None or group.members[0] is not module:
            continue
        names = [plain_adapter(m, {}) for m in group.members]
        if any(n is None for n in names):
            continue
        weights = [m.lora_A[n].weight for m, n in zip(group.members, names)]
        weights += [m.lora_B[n].weight for m, n in zip(group.members, names)]
        if all(id(w) in index for w in weights):
            found = [index[id(w)] for w in weights]
            grouped[min(found)] = found
    if not grouped:
        return None
    placed = {i for found in grouped.values() for i in found}
    order = []
    for i in range(len(params)):
        if i in grouped:
            order.extend(grouped[i])
        elif i not in placed:
            order.append(i)
    return order


class Group:
    """The adapted linears of one decoder layer that read one input, and what the first one called
    leaves for the others."""

    def __init__(self, members: list[torch.nn.Module]):
        self.members = members
        bases = [m.base_layer for m in members]
        with torch.no_grad():
            self.weight = torch.cat([l.weight for l in bases])
            self.bias = torch.cat([l.bias for l in bases]) if bases[0].bias is not None else None
        self.widths = tuple(l.out_features for l in bases)
        offset = 0
        for layer, width in zip(bases, self.widths):  # the members' weights become views of the one tensor
            layer.weight = torch.nn.Parameter(self.weight[offset:offset + width], requires_grad=False)
            if self.bias is not None:
                layer.bias = torch.nn.Parameter(self.bias[offset:offset + width], requires_grad=False)
            offset += width
        self.pending: tuple | None = None  # (input, {member index: output}) for the members not yet called
        self.seed: tuple | None = None  # (model.lora_dropout.Seeds' values, this group's index): fuse_projections_

    def take(self, index: int, x: torch.Tensor) -> torch.Tensor | None:
        if self.pending is None or self.pending[0] is not x or index not in self.pending[1]:
            return None
        out = self.pending[1].pop(index)
        if not self.pending[1]:
            self.pending = None
        return out

    def adapters(self, x: torch.Tensor) -> tuple[list, list, float, tuple] | None:
        """(A weights, B weights, dropout p, scales) when every member is the plain case in x's dtype."""
        names = [plain_adapter(m, {}) for m in self.members]
        if any(n is None for n in names):
            return None
        a = [m.lora_A[n].weight for m, n in zip(self.members, names)]
        b = [m.lora_B[n].weight for m, n in zip(self.members, names)]
        drops = {_dropout_p(m.lora_dropout[n]) for m, n in zip(self.members, names)}
        if len(drops) != 1 or len({ai.shape for ai in a}) != 1:
            return None
        if not all(w.dtype == x.dtype for w in (*a, *b, self.weight)):
            return None
        return a, b, drops.pop(), tuple(m.scaling[n] for m, n in zip(self.members, names))

    def whole(self, x: torch.Tensor) -> torch.Tensor | None:
        """The group's whole output [.., sum of widths] (None where not the plain case): what model.fused_swiglu
        reads gate and up from, and what run splits."""
        found = self.adapters(x)
        if found is None:
            return None
        a, b, p, scales = found
        if torch.compiler.is_compiling():
            return grouped_ops(x, self.weight, self.bias, p, scales, self.widths, a, b)
        return GroupedLora.apply(x, self.weight, self.bias, p, scales, self.widths, self.seed, *a, *b)

    def run(self, index: int, x: torch.Tensor) -> torch.Tensor | None:
        out = self.whole(x)
        if out is None:
            return None
        if len(self.widths) == 1:  # a group of one: its output whole (a split's backward would copy the gradient)
            return out
        outs = out.split(self.widths, dim=-1)
        rest = {i: o for i, o in enumerate(outs) if i != index}
        self.pending = (x, rest) if rest else None
        return outs[index]


def grouped_ops(x, weight, bias, p: float, scales: tuple, widths: tuple, a: list, b: list) -> torch.Tensor:
    """GroupedLora's function in plain differentiable ops, for the layers torch.compile traces: dynamo
    (torch 2.11) fails on the Function's in-place column updates, and inductor derives and fuses the
    backward of these itself. Each member still draws a mask of its own (the repeated input's elements)."""
    x2 = x.reshape(-1, x.shape[-1])
    out = torch.nn.functional.linear(x2, weight, bias)
    xd = torch.nn.functional.dropout(x2.expand(len(widths), *x2.shape), p, training=p > 0)
    t = torch.bmm(xd, torch.stack(a).transpose(1, 2))
    lora = torch.cat([(ti @ bi.t()) * s for ti, bi, s in zip(t, b, scales)], dim=1)
    return (out + lora).view(*x.shape[:-1], out.shape[-1])


def _dropout_p(module: torch.nn.Module) -> float:
    """peft's lora_dropout: nn.Dropout(p), or nn.Identity for p = 0; none outside training."""
    return float(module.p) if isinstance(module, torch.nn.Dropout) and module.training else 0.0


def grouped_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    group, index = self._nli_group
    # a compiled layer traces a group of one as --fused-lora's update: grouped_ops' cat and add there gave
    # inductor a slower step and bf16 sums in another order (docs/benchmarks.md, issue 14, eighteenth round)
    if not args and not kwargs and not (len(group.widths) == 1 and torch.compiler.is_compiling()):
        out = group.take(index, x)
        if out is None:
            out = group.run(index, x)
        if out is not None:
            return out
    return fused_forward(self, x, *args, **kwargs)


def groups_of(model: torch.nn.Module, alone: bool = False) -> list[list[torch.nn.Module]]:
    """Per decoder layer, the adapted linears that share an input (two or more), in the family's order;
    with `alone`, each other adapted linear of the layer too, as a group of one."""
    from nli_qlora.model.compile_layers import decoder_layers
    family = family_of(getattr(getattr(model, "config", None), "model_type", None))
    by_group: dict[str, list[str]] = {}
    for lin in family.linears:
        by_group.setdefault(lin.group, []).append(lin.name)
    found = []
    for layer in decoder_layers(model):
        named = {name.rsplit(".", 1)[-1]: m for name, m in layer.named_modules() if is_lora_linear(m)}
        for names in by_group.values():
            members = [named[n] for n in names if n in named]
            if len(members) >= 2 and _groupable(members):
                found.append(members)
            elif alone:
                found.extend([m] for m in members if _groupable([m]))
    return found


def _groupable(members: list[torch.nn.Module]) -> bool:
    """Plain frozen linears (the dequantized base) of one input width, with biases on all or none."""
    bases = [m.base_layer for m in members]
    return (all(type(l) is torch.nn.Linear and not l.weight.requires_grad for l in bases)
            and len({l.in_features for l in bases}) == 1 and len({l.weight.dtype for l in bases}) == 1
            and len({l.bias is None for l in bases}) == 1)


def fuse_projections_(model: torch.nn.Module) -> int:
    """Give the model's shared-input linears the grouped forward (in place), and each other adapted
    linear of a decoder layer (o_proj, down_proj; Phi's dense, fc2) as a group of one, whose backward
    folds the adapter's input gradient into the base's matmul (one add fewer); the number of groups.
    Needs the dequantized base (model.dequantize): 4-bit layers cannot share one matmul."""
    groups = groups_of(model, alone=True)
    if all(len(members) == 1 for members in groups):
        raise UserError("--fused-projections: found no adapted linears that share an input (q_proj, k_proj, "
                        "v_proj; gate_proj, up_proj; Phi's fc1) over a dequantized base: check --target-modules "
                        "and --dequantize-base")
    seeds = _dropout_seeds(model, len(groups))
    for number, members in enumerate(groups):
        group = Group(members)
        group.seed = (seeds.values, number) if seeds is not None else None
        for index, m in enumerate(members):
            m._nli_group = (group, index)
            m.forward = types.MethodType(grouped_forward, m)
    fuse_swiglu_(model)
    return len(groups)


def _dropout_seeds(model: torch.nn.Module, groups: int) -> lora_dropout.Seeds | None:
    """The groups' dropout seeds (model.lora_dropout), redrawn before each training forward of the decoder
    (LabelScorer calls the decoder, not the model around it); None where the kernel cannot run."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = base.get_output_embeddings().weight.device
    if not runs_on(device) or lora_dropout.kernel() is None:  # (a CPU run imports no Triton for it)
        return None
    seeds = lora_dropout.Seeds(groups, device)
    base.get_decoder().register_forward_pre_hook(seeds.draw)
    return seeds
