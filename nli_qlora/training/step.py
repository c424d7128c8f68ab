"""The one training step: the loop runs it, the benchmarks time it, the tuner measures it.

    zero grads -> [forward -> loss -> backward] per micro-batch -> clip -> one host sync
               -> finite? -> optimizer -> schedule

Two modes of the same arithmetic (`RunConfig.step_mode`):
- eager: the plain PyTorch step, one optimizer tensor per LoRA weight.
- fast (default): the LoRA weights and their gradients live in one flat buffer each, so the
  8-bit optimizer and the clipping are one launch instead of hundreds; on CUDA (without gradient
  checkpointing) forward+backward of each padded batch shape is captured once as a CUDA graph and
  replayed, removing the Python and kernel-launch overhead that bounds a batch-8 QLoRA step. On CUDA
  bitsandbytes' 8-bit AdamW is stepped by our kernel (training.adamw8bit_kernel), queued before the
  host sync: the device itself skips a step whose loss or gradient norm is not finite. So the loop
  also queues the next step's forward and backward before that sync (`then`, Trainer.queued): the
  device runs it straight after this step's update while the host reads back, decides, logs and
  builds the batch after, and the next update is still launched after the host has decided."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch

from nli_qlora.infra.distributed import World
from nli_qlora.run.checkpoint import set_torch_rng_state, torch_rng_state
from nli_qlora.training.adamw8bit_kernel import DeviceAdamW8bit
from nli_qlora.training.scoring import LabelScorer

ALIGN = 2048  # flat segments start on 8-bit optimizer block boundaries: blocks never straddle two weights
MASTER_DTYPE = torch.float32  # what the optimizer steps and checkpoints hold, whatever the adapters compute in


def _seat(p: torch.nn.Parameter, data: torch.Tensor, grad: torch.Tensor | None) -> None:
    p.grad = None  # a gradient of the old dtype must not meet the new data
    p.data = data
    p.grad = grad  # autograd accumulates into it in place


class FlatParams:
    """Parameters re-seated as views of one float32 buffer, their gradients as views of another.

    With a `work_dtype` (--lora-compute-dtype bfloat16) the modules compute from a copy of the
    masters in that dtype instead, and autograd writes that dtype's gradients into a buffer of
    their own: `collect` adds them into the float32 gradient after each backward, `publish` copies
    the masters into the working copy after each update (one kernel each). So the adapters' matmuls
    run on tensor cores in bfloat16, as under Trainer's bf16 autocast, while the optimizer, clipping,
    the all-reduce and checkpoints see float32 only.

    `work_order` (indices into `params`) lays the working copies out in another order than the
    masters: --fused-projections puts the LoRA A (and B) weights of the linears that share an input
    side by side, so that its batched matmuls read them as one [G, r, in] view instead of stacking a
    copy each forward (model.fused_projections.work_order). Only the working weights move: the
    masters, the gradients, the optimizer's state and checkpoints keep `params`' order. Each weight
    keeps its ALIGN-padded span, so the working buffer is the masters' blocks of ALIGN values
    permuted, and `publish` two kernels (a cast into a staging copy, one gather of blocks) whatever
    the number of weights: a multi-tensor copy of 422 views cost 0.2-0.3 ms a step in host launch
    work on an H200 (docs/benchmarks.md, issue 14, eighteenth round)."""

    def __init__(self, params: list[torch.nn.Parameter], work_dtype: torch.dtype | None = None,
                 work_order: list[int] | None = None):
        sizes = [-(-p.numel() // ALIGN) * ALIGN for p in params]
        device = params[0].device
        self.param = torch.nn.Parameter(torch.zeros(sum(sizes), device=device, dtype=MASTER_DTYPE), requires_grad=False)
        self.grad = torch.zeros_like(self.param)
        self.param.grad = self.grad
        self.params = params
        spans, offset = [], 0
        for p, size in zip(params, sizes):
            spans.append((offset, p.numel()))
            offset += size
        view = lambda buf, p, o, n: buf[o:o + n].view(p.shape)
        for p, (o, n) in zip(params, spans):
            self.param.data[o:o + n].copy_(p.data.reshape(-1))
        self.masters = [view(self.param.data, p, o, n) for p, (o, n) in zip(params, spans)]
        self.work = self.work_grad = None
        self.blocks = self.staging = None  # work_order: which master block each working block copies
        if work_dtype is not None and work_dtype != MASTER_DTYPE:
            self.work_grad = torch.zeros_like(self.param.data, dtype=work_dtype)
            grads = [view(self.work_grad, p, o, n) for p, (o, n) in zip(params, spans)]
            if work_order is None or list(work_order) == list(range(len(params))):
                self.work = self.param.data.to(work_dtype)
                self.seated = [view(self.work, p, o, n) for p, (o, n) in zip(params, spans)]
            else:
                if sorted(work_order) != list(range(len(params))):
                    raise ValueError("work_order must be a permutation of the parameters' indices")
                self.work, self.staging = torch.empty_like(self.work_grad), torch.empty_like(self.work_grad)
                self.seated, blocks, offset = [None] * len(params), [], 0
                for i in work_order:
                    (o, n), size = spans[i], sizes[i]
                    self.seated[i] = view(self.work, params[i], offset, n)
                    blocks.extend(range(o // ALIGN, (o + size) // ALIGN))
                    offset += size
                self.blocks = torch.tensor(blocks, device=device)
                self.publish()
        else:
            self.seated = self.masters
            grads = [view(self.grad, p, o, n) for p, (o, n) in zip(params, spans)]
        self.grads = grads
        for p, data, grad in zip(params, self.seated, grads):
            _seat(p, data, grad)

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward() into the seated gradients, without autograd's one add kernel per weight.

        Autograd accumulates each leaf's gradient into its `.grad` with an add of its own
        (AccumulateGrad): SmolLM2 has 422 LoRA weights, so 422 small kernels a backward, about a
        seventh of a compiled step's (docs/benchmarks.md, issue 14, ninth round). autograd.grad
        returns the gradients instead; they are added into the seated ones in a few multi-tensor
        launches, the same sum `+=` makes, bit for bit."""
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        pairs = [(dst, g) for dst, g in zip(self.grads, grads) if g is not None]  # unused: no gradient, as with backward
        if pairs:
            torch._foreach_add_([dst for dst, _ in pairs], [g for _, g in pairs])

    def begin(self) -> None:
        """Before a micro-batch's backward: the working gradients hold this micro-batch's only."""
        if self.work_grad is not None:
            self.work_grad.zero_()

    def collect(self) -> None:
        """After it: accumulate into the float32 gradient (micro-batches sum in float32)."""
        if self.work_grad is not None:
            self.grad.add_(self.work_grad)

    def publish(self) -> None:
        """After the masters changed (an update, a resume, a broadcast): the working copy follows."""
        if self.work is None:
            return
        if self.blocks is None:
            self.work.copy_(self.param.data)
        else:
            self.staging.copy_(self.param.data)
            torch.index_select(self.staging.view(-1, ALIGN), 0, self.blocks, out=self.work.view(-1, ALIGN))

    @contextlib.contextmanager
    def masters_seated(self):
        """The modules hold the float32 masters while inside, so that peft saves or loads them."""
        if self.work is None:
            yield
            return
        for p, m in zip(self.params, self.masters):
            _seat(p, m, None)
        try:
            yield
        finally:
            for p, data, grad in zip(self.params, self.seated, self.grads):
                _seat(p, data, grad)
            self.publish()


class MasterWeights:
    """The eager twin of FlatParams' working copies: one float32 master per LoRA weight, stepped by
    the optimizer, and the module's weight in `work_dtype`; the same arithmetic tensor by tensor."""

    def __init__(self, params: list[torch.nn.Parameter], work_dtype: torch.dtype):
        self.params = params
        self.masters = [torch.nn.Parameter(p.detach().to(MASTER_DTYPE).clone()) for p in params]
        self.seated = [p.detach().to(work_dtype) for p in params]
        for p, data in zip(params, self.seated):
            _seat(p, data, None)

    def begin(self) -> None:
        pass  # collect() leaves the working gradients unset

    def collect(self) -> None:
        for p, m in zip(self.params, self.masters):
            if p.grad is not None:
                if m.grad is None:
                    m.grad = torch.zeros_like(m)
                m.grad.add_(p.grad)
                p.grad = None

    def publish(self) -> None:
        for data, m in zip(self.seated, self.masters):
            data.copy_(m.detach())

    @contextlib.contextmanager
    def masters_seated(self):
        for p, m in zip(self.params, self.masters):
            _seat(p, m.detach(), None)
        try:
            yield
        finally:
            for p, data in zip(self.params, self.seated):
                _seat(p, data, None)
            self.publish()


_WARM_UP_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def warm_up_stream(device: torch.device) -> torch.cuda.Stream:
    """The one side stream of a device for every capture's warm-up, in every trainer of the process.

    cuBLAS keeps a workspace for each stream it has run on until the process ends (on an H200 64 MiB
    a stream, counted in torch.cuda.memory_allocated): a new stream per trainer left that much behind
    every time the tuner or the benchmarks built their next trainer (docs/benchmarks.md, issue 14,
    sixteenth round). torch.cuda.graph keeps one capture stream per process for the same reason."""
    if device not in _WARM_UP_STREAMS:
        _WARM_UP_STREAMS[device] = torch.cuda.Stream(device)
    return _WARM_UP_STREAMS[device]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: dict
    scale: torch.Tensor
    loss: torch.Tensor


@dataclass
class GraphedForwardBackward:
    """Forward+backward captured per input shape; replays write gradients into the flat buffer."""
    scorer: LabelScorer
    loss_kind: str
    flat: FlatParams
    warmup: int = 1
    warm_every_shape: bool = False  # --compile: a new shape may compile, which cannot happen inside a capture
    graphs: dict = field(default_factory=dict)
    capture_s: float = 0.0
    pool: object = None

    @staticmethod
    def _key(batch: dict) -> tuple:
        return tuple((k, tuple(v.shape)) for k, v in sorted(batch.items()) if k != "index")

    def has(self, batch: dict) -> bool:
        """Whether the graph of this batch's shape is captured (a replay alone, no capture)."""
        return self._key(batch) in self.graphs

    def __call__(self, batch: dict, scale: float) -> tuple[torch.Tensor, bool]:
        key = self._key(batch)
        g = self.graphs.get(key)
        captured = g is None
        if captured:
            g = self.graphs[key] = self._capture(batch)
        for k, v in g.inputs.items():
            v.copy_(batch[k], non_blocking=True)
        g.scale.fill_(scale)
        g.graph.replay()
        return g.loss, captured

    def _forward_backward(self, inputs: dict, scale: torch.Tensor) -> torch.Tensor:
        self.flat.begin()
        loss = loss_backward(self.scorer, inputs, self.loss_kind, scale, self.flat.backward)
        self.flat.collect()
        return loss

    def _capture(self, batch: dict) -> _Graph:
        """Warm-up and capture draw no random numbers that training sees: the CUDA generator is put
        back as it was (fork_rng). Otherwise each capture (one per new shape) would shift the dropout
        stream by an amount that depends on when shapes first occur, and a resumed run, which captures
        its shapes anew after the checkpoint, would train differently from an uninterrupted one."""
        with torch.random.fork_rng(devices=[self.flat.grad.device]):
            return self._capture_rng_neutral(batch)

    def _capture_rng_neutral(self, batch: dict) -> _Graph:
        t0 = time.perf_counter()
        inputs = {k: v.clone() for k, v in batch.items() if k != "index"}
        scale = torch.ones((), device=self.flat.grad.device)
        # warm-up outside the graph, before the first capture only: lazy initialisation (cuBLAS
        # handles and workspaces, kernels loaded) happens once per process. A later shape captures
        # at once: its eager warm-up pass cost ~0.5-1 s a shape on the lent H200's host (issue 14).
        # Compiled layers warm up every shape: one the dynamic graph does not cover (a batch of one
        # row) compiles anew, and compiling launches kernels that a capture cannot hold
        warmup = self.warmup if not self.graphs or self.warm_every_shape else 0
        saved = self.flat.grad.clone() if warmup else None  # capturing itself runs no kernel
        side = warm_up_stream(self.flat.grad.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._forward_backward(inputs, scale)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()  # one pool for all shapes: replays never overlap
        with torch.cuda.graph(graph, pool=self.pool):
            loss = self._forward_backward(inputs, scale)
        if saved is not None:
            self.flat.grad.copy_(saved)  # warm-up gradients are not part of training
        torch.cuda.synchronize()
        self.capture_s += time.perf_counter() - t0
        return _Graph(graph, inputs, scale, loss)


@dataclass
class Queued:
    """The next step's forward and backward, queued before this step's read-back (train_step's `then`)."""
    total: torch.Tensor  # its loss, on the device
    captured: bool  # a capture happened for it
    rng: dict  # torch's generators before it was queued: what a checkpoint between the two steps holds


@dataclass
class Trainer:
    """What a step needs; built once by the loop, a benchmark or the tuner (see build_trainer)."""
    scorer: LabelScorer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    params: list[torch.nn.Parameter]
    loss_kind: str = "label"
    max_grad_norm: float = 1.0
    flat: FlatParams | None = None
    graphed: GraphedForwardBackward | None = None
    world: World = field(default_factory=World)  # data parallel: gradients summed across ranks
    masters: MasterWeights | None = None  # eager step with --lora-compute-dtype bfloat16
    device_update: DeviceAdamW8bit | None = None  # the fast step's 8-bit AdamW, launched before the host sync
    queued: Queued | None = None  # the next step's forward and backward, already on the device's queue
    read_at: float = 0.0  # perf_counter() when loop_step last read a step back
    _host: torch.Tensor | None = None  # pinned: the read-back of loss and norm that does not wait for `queued`

    @property
    def copies(self) -> FlatParams | MasterWeights | None:
        """Where the weights the optimizer steps live when the modules compute from copies of them."""
        if self.flat is not None:
            return self.flat if self.flat.work is not None else None
        return self.masters

    def publish(self) -> None:
        """After the stepped weights changed: the modules' working copies follow (a no-op without)."""
        if self.copies is not None:
            self.copies.publish()

    def masters_seated(self):
        """Inside, the modules hold the weights the optimizer steps: what a checkpoint saves and loads."""
        return self.copies.masters_seated() if self.copies is not None else contextlib.nullcontext()

    def rng_at_boundary(self) -> dict | None:
        """torch's generators as they stood at the end of the last step: a checkpoint taken there holds them,
        not the state a queued forward has advanced (None: nothing queued, the generators are that state)."""
        return self.queued.rng if self.queued is not None else None

    def drop_queued(self) -> None:
        """Forget the queued forward (after an out-of-memory error): the next step runs from its batches."""
        if self.queued is not None:
            set_torch_rng_state(self.queued.rng)
            self.queued = None

    def zero_grad(self) -> None:
        if self.flat is not None:
            self.flat.grad.zero_()  # the views stay seated; one memset
        else:
            self.optimizer.zero_grad(set_to_none=True)

    def all_reduce(self, total: torch.Tensor) -> None:
        """Sum the (already 1/global-rows scaled) gradients and loss across ranks: the global mean."""
        if not self.world.enabled:
            return
        if self.flat is not None:
            grads = [self.flat.grad]
        else:
            for p in self.params:
                if p.grad is None:  # a rank with no rows in this batch still takes part
                    p.grad = torch.zeros_like(p)
            grads = [p.grad for p in self.params]
        self.world.all_reduce_(grads + [total])

    def clip(self) -> torch.Tensor:
        grads = [self.flat.param] if self.flat is not None else self.params
        if self.max_grad_norm > 0:
            return torch.nn.utils.clip_grad_norm_(grads, self.max_grad_norm)
        return torch.nn.utils.get_total_norm([p.grad for p in grads if p.grad is not None])


def loss_backward(scorer: LabelScorer, batch: dict, loss_kind: str, scale, backward) -> torch.Tensor:
    """One micro-batch's loss times `scale` and its `backward(loss)`; the loss, detached. The run's
    attention kernel holds through the backward pass too: gradient checkpointing recomputes each layer's
    forward there, and a recomputation that picked another kernel than the forward (cuDNN's, torch's
    pick on Hopper) saves tensors of other shapes, which checkpointing refuses."""
    with scorer.attention():
        loss, _ = scorer.loss(batch, loss_kind)
        loss = loss * scale
        backward(loss)
    return loss.detach()


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(t: Trainer, host_batches: list[dict], device: torch.device, global_rows: int | None = None
               ) -> tuple[dict, float]:
    """(train_step's stats, seconds): the host-to-device copy and the whole step, optimizer update
    included. The device is synchronized before the clock starts and before it is read, so the
    time is this step's own: the benchmark suite times a step this way. loop_step with no next step."""
    return loop_step(t, host_batches, device, global_rows)


def loop_step(t: Trainer, host_batches: list[dict] | None, device: torch.device, global_rows: int | None = None,
              then=None) -> tuple[dict, float]:
    """(train_step's stats, seconds) as the loop runs a step: `then()` gives the next step's (host batches,
    global rows) to queue before the read-back. Where the previous call queued this step, `host_batches` is
    None and the seconds run from that call's read-back, so they hold the loop's own work between the steps,
    which the device no longer waits for; otherwise they run from a synchronized start (and, where nothing
    was queued after, to a synchronized end: timed_step). Batches given while a step is queued, or none
    without one: train_step's ValueError."""
    if host_batches is None:
        t0, batches = t.read_at, None
    else:
        synchronize(device)
        t0 = time.perf_counter()
        batches = [to_device(b, device) for b in host_batches]
    stats = train_step(t, batches, global_rows, then)
    if t.queued is None:
        synchronize(device)  # bitsandbytes' own update is launched after the read-back
    t.read_at = time.perf_counter()
    return stats, t.read_at - t0


def forward_backward(t: Trainer, micro_batches: list[dict], global_rows: int | None = None
                     ) -> tuple[torch.Tensor, bool]:
    """Zeroed gradients, then each micro-batch's loss, weighted by its rows over the global rows, and its
    backward: (the summed loss on the device, whether a new shape was captured)."""
    rows = global_rows or sum(int(b["labels"].shape[0]) for b in micro_batches)
    t.zero_grad()
    total, captured = None, False
    for batch in micro_batches:
        scale = batch["labels"].shape[0] / rows
        if t.graphed is not None:
            loss, new = t.graphed(batch, scale)
            captured |= new
        else:
            if t.copies is not None:
                t.copies.begin()
            loss = loss_backward(t.scorer, batch, t.loss_kind, scale,
                                 t.flat.backward if t.flat is not None else torch.Tensor.backward)
            if t.copies is not None:
                t.copies.collect()  # working-copy gradients into the float32 ones
        total = loss.clone() if total is None else total + loss
    if total is None:
        total = torch.zeros((), device=t.params[0].device)
    return total, captured


def queue_next(t: Trainer, then) -> None:
    """Queue the next step's forward and backward (Trainer.queued) where that changes nothing but the time:
    the update of this step is already on the device's queue ahead of it, and the device itself skips it if
    it was not finite (so only with the kernel's update), and every shape it needs is captured (a capture
    synchronizes). A failure here (out of memory, say) is no error: nothing is queued, and the next step
    meets it itself."""
    rng = torch_rng_state()
    try:
        host_batches, global_rows = then()
        if t.graphed is not None and not all(t.graphed.has(b) for b in host_batches):
            return
        total, captured = forward_backward(t, [to_device(b, t.params[0].device) for b in host_batches], global_rows)
    except Exception:  # out of memory, or any failure: raised where the next step runs it, at a step boundary,
        set_torch_rng_state(rng)  # not here, after this step's update and before the host has counted it
        return
    t.queued = Queued(total, captured, rng)


def _read_back(t: Trainer, values: torch.Tensor, then) -> list[float]:
    """values.tolist(), with the next step queued (`then`) before the host waits: the copy back and an
    event are queued first, so the wait ends with this step, not with the next one's forward and backward."""
    if then is None or t.device_update is None:
        return values.tolist()  # the one host sync
    if not values.is_cuda:
        out = values.tolist()
        queue_next(t, then)
        return out
    if t._host is None:
        t._host = torch.empty(2, dtype=torch.float32, pin_memory=True)
    t._host.copy_(values, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    queue_next(t, then)
    done.synchronize()  # the one host sync
    return t._host.tolist()


def train_step(t: Trainer, micro_batches: list[dict] | None, global_rows: int | None = None, then=None) -> dict:
    """One optimizer step over `micro_batches` (gradient accumulation when more than one), or over the
    step the previous call queued (`micro_batches` None; see queue_next and `then`, loop_step's).

    Under data parallelism `micro_batches` are this rank's share of a batch of `global_rows` rows
    (none, when the batch has fewer rows than ranks); each loss is weighted by its rows over the
    global rows, so the summed gradient is the mean over the whole batch, however it was split.

    Returns {"loss", "grad_norm", "skipped", "captured", "queued"} ("queued": this step was). A non-finite
    loss skips the update (gradients dropped) so one bad batch cannot poison the adapter weights."""
    if (t.queued is None) == (micro_batches is None):  # checked first: the queued step stays queued
        raise ValueError("train_step: give the micro-batches exactly when no step is queued")
    queued, t.queued = t.queued, None
    total, captured = (queued.total, queued.captured) if queued is not None else \
        forward_backward(t, micro_batches, global_rows)
    t.all_reduce(total)
    grad_norm = t.clip()
    if t.device_update is not None:  # queued behind the clipping; writes nothing where the check below fails
        t.device_update.launch(total, grad_norm)
        t.publish()
    loss_value, norm_value = _read_back(t, torch.stack([total.float(), grad_norm.float()]), then)
    if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
        if t.queued is None:  # a queued step zeroed them before its own backward
            t.zero_grad()
        return {"loss": loss_value, "grad_norm": None, "skipped": True, "captured": captured,
                "queued": queued is not None}
    if t.device_update is not None:
        t.device_update.advance()
    else:
        t.optimizer.step()
        t.publish()
    t.scheduler.step()
    return {"loss": loss_value, "grad_norm": norm_value, "skipped": False, "captured": captured,
            "queued": queued is not None}


def build_trainer(scorer: LabelScorer, params: list[torch.nn.Parameter], optimizer_factory, scheduler_factory,
                  loss_kind: str = "label", max_grad_norm: float = 1.0, step_mode: str = "fast",
                  gradient_checkpointing: bool = False, work_dtype: torch.dtype | None = None,
                  compiled: bool = False, work_order: list[int] | None = None) -> Trainer:
    """The Trainer for a mode. The optimizer is made after flattening, over the flat buffer, so it
    steps every LoRA weight in one call; factories take the parameter list and the optimizer.
    `work_dtype`: the adapters compute from copies in that dtype of float32 masters (FlatParams).
    `compiled`: the model's layers are compiled (model.compile_layers), which the capture must know.
    `work_order`: the working copies' layout (FlatParams; the fast mode only)."""
    flat = graphed = masters = None
    work_dtype = None if work_dtype == MASTER_DTYPE else work_dtype
    if step_mode == "fast":
        flat = FlatParams(params, work_dtype, work_order)
        opt_params = [flat.param]
        if flat.param.is_cuda and not gradient_checkpointing:
            graphed = GraphedForwardBackward(scorer, loss_kind, flat, warm_every_shape=compiled)
    elif work_dtype is not None:
        masters = MasterWeights(params, work_dtype)
        opt_params = masters.masters
    else:
        for p in params:  # float32, also where a trainer before this one left working copies (the tuner)
            if p.dtype != MASTER_DTYPE:
                _seat(p, p.data.to(MASTER_DTYPE), None)
        opt_params = params
    optimizer = optimizer_factory(opt_params)
    stepped = masters.masters if masters is not None else params  # what clipping and the all-reduce see
    device_update = DeviceAdamW8bit.for_optimizer(optimizer, flat.param) if flat is not None else None
    return Trainer(scorer, optimizer, scheduler_factory(optimizer), stepped, loss_kind, max_grad_norm, flat, graphed,
                   masters=masters, device_update=device_update)
