"""Data parallelism under torchrun: the few collectives the loop needs, and nothing when alone.

`torchrun --nproc_per_node N -m nli_qlora.train ...` starts N copies of the CLI; each loads the
4-bit base model on its own GPU (cuda:LOCAL_RANK), keeps a full replica of the LoRA weights and
their 8-bit optimizer state, and trains on its share of every global batch:

    global batch (--batch-size rows, bucketed by length, sorted) -> rows[rank::N] on each rank
    forward+backward (losses scaled by local rows / global rows)
    all_reduce(SUM) of the one flat LoRA gradient buffer and of the loss -> the global mean
    identical clip, finite check and optimizer step on every rank: replicas never drift

Why not DistributedDataParallel: the step already keeps every LoRA gradient in one contiguous
buffer (nli_qlora.training.step.FlatParams), so one all_reduce of that buffer is exactly what DDP's bucketed
reduction would do with a single bucket (17M LoRA parameters: 70 MB, ~1 ms on NVLink), and it
runs after the CUDA-graph replays instead of inside them: DDP's autograd hooks cannot be captured
in the per-shape graphs, and its forward wrapper would bypass the scorer's answer-position head.
FSDP would shard what is already small (the LoRA weights and optimizer state are ~100 MB); the
4-bit base (1.5 GB for Phi-2) fits every GPU whole, so sharding buys nothing but collectives.

Everything a rank decides alone must be agreed: a stop request (`any`), and evaluation rows,
which are sharded and gathered so every row is scored exactly once. Only rank 0 writes. A
collective that fails because another rank died becomes a one-line PeerFailed.

Several machines (torchrun --nnodes N): RANK is global, LOCAL_RANK picks this machine's GPU, and
nothing here touches a file, so no filesystem is shared (run.handover moves what a resume needs).
A collective waits at most NLI_QLORA_COLLECTIVE_TIMEOUT seconds (default 1800) for its peers: a
machine that froze or dropped off the network ends the others with a PeerFailed after that long."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from nli_qlora.infra.errors import UserError

TIMEOUT_ENV = "NLI_QLORA_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800  # long enough for a rank-0 checkpoint or test evaluation while others wait


def collective_timeout() -> timedelta:
    """How long a collective waits for the other processes: NLI_QLORA_COLLECTIVE_TIMEOUT seconds."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1
    if not 0 < seconds < 1e8:
        raise UserError(f"{TIMEOUT_ENV}={text!r}: give the seconds a collective may wait for the other "
                        f"processes, e.g. {DEFAULT_TIMEOUT_S}")
    return timedelta(seconds=seconds)


class PeerFailed(UserError):
    """A collective failed: another process of the run stopped (its own error says why)."""


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def writer(self) -> bool:
        """Rank 0 alone writes the metrics file, checkpoints, predictions and the report."""
        return self.rank == 0

    # --- the collectives; each is a no-op for one process ---------------------------------------

    def shard(self, items: list) -> list:
        """This rank's share, interleaved: from a length-sorted batch every rank gets similar lengths."""
        return items[self.rank::self.size] if self.enabled else items

    def all_reduce_(self, tensors: list[torch.Tensor]) -> None:
        """Sum in place across ranks."""
        if not self.enabled:
            return
        with _peer_errors():
            for work in [dist.all_reduce(t, async_op=True) for t in tensors]:
                work.wait()

    def broadcast_(self, tensors: list[torch.Tensor]) -> None:
        """Rank 0's values everywhere (the LoRA weights after setup: replicas start identical)."""
        if not self.enabled:
            return
        with _peer_errors():
            for t in tensors:
                dist.broadcast(t, src=0)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a stop request one rank saw first)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._device())
        self.all_reduce_([t])
        return bool(t.item() > 0)

    def gather_rows(self, part: np.ndarray, total: int) -> np.ndarray:
        """Reassemble per-row results sharded with `shard(range(total))`, on every rank."""
        if not self.enabled:
            return part
        parts: list = [None] * self.size
        with _peer_errors():
            dist.all_gather_object(parts, part)
        out = np.zeros((total,) + part.shape[1:], dtype=part.dtype)
        for rank, p in enumerate(parts):
            out[rank::self.size] = p
        return out

    def broadcast_object(self, obj, src: int = 0):
        """Rank `src`'s object on every rank (the resolved run directory and config; a resume's files)."""
        if not self.enabled:
            return obj
        box = [obj]
        with _peer_errors():
            dist.broadcast_object_list(box, src=src)
        return box[0]

    def gather_object(self, obj) -> list:
        """Every rank's object, in rank order, on every rank (what each one's own disk holds)."""
        if not self.enabled:
            return [obj]
        out: list = [None] * self.size
        with _peer_errors():
            dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            with _peer_errors():
                dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def _device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


@contextmanager
def _peer_errors():
    """A collective that fails (a peer exited, a timeout) raises PeerFailed, one line."""
    try:
        yield
    except RuntimeError as err:  # torch.distributed.DistError is one
        lines = str(err).strip().splitlines()
        first = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else type(err).__name__  # gloo's source line
        if "timed out" in first.lower() or "timeout" in first.lower():  # gloo: also "Application timeout caused pair closure"
            raise PeerFailed(f"another process of this run did not answer for {_seconds()} s ({TIMEOUT_ENV}): its "
                             f"machine stopped or the network between them failed, so this one stops too "
                             f"(here: {first[:100]})") from None
        raise PeerFailed(f"another process of this run ended, so this one stops too (its own error, or "
                         f"torchrun's report, says why; here: {first[:120]})") from None


def _seconds() -> str:
    try:
        return f"{collective_timeout().total_seconds():g}"
    except UserError:
        return "?"


def launched() -> World:
    """Who this process is, as torchrun's environment says (WORLD_SIZE, RANK, LOCAL_RANK); a plain
    `python -m` process is rank 0 of 1. No process group is made here (see init_world)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return World()
        return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise UserError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} with RANK={os.environ.get('RANK')!r}: "
                        f"start several processes with torchrun --nproc_per_node N -m nli_qlora.train ...") from None


def init_world() -> World:
    """The process group from torchrun's environment (and MASTER_ADDR/PORT): NCCL on GPUs, gloo on
    CPUs. One process (plain `python -m`): no group at all."""
    me = launched()
    if not me.enabled:
        return me
    timeout = collective_timeout()  # a bad setting is one line before any process waits on another
    rank, size, local_rank = me.rank, me.size, me.local_rank
    cuda = torch.cuda.is_available()
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} GPUs: "
                            f"use --nproc_per_node {torch.cuda.device_count()} or fewer")
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    kwargs = {"device_id": torch.device("cuda", local_rank)} if cuda else {}
    dist.init_process_group(backend, timeout=timeout, **kwargs)
    return World(rank, size, local_rank, backend)
