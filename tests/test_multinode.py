"""Several machines, simulated on this one: two torchrun launches with --nnodes 2, two processes each.

Each launch is a "node" (gloo on the CPU, rendezvous on localhost). Node 1 runs in its own mount
namespace where a directory of its own is bind-mounted over the parent of `--output-dir`: both
nodes are given the same path, with a different filesystem behind it, as on machines that share
none. (A bind mount rather than a fresh tmpfs, so that the test can read what node 1 wrote.)

What must hold: four processes over two nodes train what one process does (the tiny preset, no
dropout, 32-bit AdamW, as in test_data_parallel.py); global rank 0 alone writes the run directory,
on whichever node it landed; a stop sent to one node's launcher checkpoints and ends both; a resume
whose rank 0 is on a node that never saw the run directory continues it there; a node that stops
answering ends the other within the collective timeout, and the run resumes in one process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nli_qlora.run import checkpoint as ckpt
from nli_qlora.run.metrics import read_metrics
from test_data_parallel import ALONE, TINY, Run, assert_same_training, ok

PATIENCE_S = 240  # a bound on waits so that a hang fails the test instead of blocking it; not a speed check


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(rendezvous: list[str], local_addr: str | None = None) -> list[str]:
    addr = ["--local-addr", local_addr] if local_addr else []
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "2",
            *rendezvous, *addr, "-m", "nli_qlora.train"]


def static(port: int, node_rank: int) -> list[str]:
    """Static rendezvous: node 0 hosts the store and always holds rank 0."""
    return ["--master-addr", "127.0.0.1", "--master-port", str(port), "--node-rank", str(node_rank)]


def c10d(port: int) -> list[str]:
    """Dynamic rendezvous: global rank 0 goes to the node whose descriptor (address, pid) sorts first."""
    return ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "mn"]


def on_own_disk(disk: Path, path: Path, launcher: list[str]) -> list[str]:
    """`launcher` in a mount namespace of its own, where `disk` hides whatever is at `path`."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", str(disk), str(path), *launcher]


@pytest.fixture(scope="module")
def can_unshare(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("ns-a"), tmp_path_factory.mktemp("ns-b")
    done = subprocess.run(on_own_disk(a, b, ["true"]), capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {done.stderr.decode().strip()}")


class Cluster:
    """Two simulated nodes: node 0 sees `path` on the machine's disk, node 1 sees `disk1` there."""

    def __init__(self, root: Path):
        self.path = root / "path"  # the parent of --output-dir, the same on both nodes
        self.disk1 = root / "disk1"
        self.path.mkdir(parents=True, exist_ok=True)
        self.disk1.mkdir(parents=True, exist_ok=True)
        self.run_dir = self.path / "run"

    def on_node1(self, run_dir: Path) -> Path:
        """Where node 1's files at `run_dir` lie, seen from here."""
        return self.disk1 / run_dir.relative_to(self.path)

    def launch(self, launchers: tuple[list[str], list[str]], args: list[str], env: dict | None = None) -> list[Run]:
        """[node 0, node 1], each a torchrun launch in its own process group."""
        return [Run(self.run_dir, launchers[0], args, env),
                Run(self.run_dir, on_own_disk(self.disk1, self.path, launchers[1]), args, env)]


def alive(pids) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in Path(f"/proc/{p}/status").read_text()]


def until(done, what: str, detail=None) -> None:
    """Wait for `done()`, at most PATIENCE_S: a hang fails here instead of blocking the suite, saying
    what `detail()` returns (the launchers' last output) so the hang can be told apart afterwards."""
    end = time.monotonic() + PATIENCE_S
    while not done():
        if time.monotonic() > end:
            pytest.fail(f"still waiting after {PATIENCE_S} s for {what}" + (f"\n{detail()}" if detail else ""))
        time.sleep(0.1)


def finish(*nodes: Run) -> list[int]:
    until(lambda: all(n.proc.poll() is not None for n in nodes), "both launchers to end",
          detail=lambda: "\n".join(f"--- node {i} (exit {n.proc.poll()}), last stderr:\n{n.stderr()[-3000:]}"
                                   for i, n in enumerate(nodes)))
    return [n.proc.returncode for n in nodes]


ELASTIC_AGENT = "torch/distributed/elastic/agent/server/api.py"


def ours(stderr: str) -> str:
    """stderr less the lines torchrun's own agent logs. After every worker has exited 0, a launcher
    whose exit barrier loses the other launcher's store (it closes once its own workers are done:
    under load one launcher can finish the barrier first) logs the exception with a traceback and
    still exits 0 (torch's `_exit_barrier` logs and goes on). The workers' tracebacks stay."""
    return "\n".join(line for line in stderr.splitlines() if ELASTIC_AGENT not in line)


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Path:
    return ok(Run.start(tmp_path_factory.mktemp("mn") / "alone", ALONE))


def test_two_nodes_of_two_processes_train_what_one_does(can_unshare, alone, tmp_path):
    """Static rendezvous: node 0 holds rank 0 and the run directory; node 1's disk stays empty."""
    cluster, port = Cluster(tmp_path), free_port()
    nodes = cluster.launch((torchrun(static(port, 0)), torchrun(static(port, 1))),
                           TINY + ["--output-dir", str(cluster.run_dir)])
    assert finish(*nodes) == [0, 0], nodes[0].stderr() + nodes[1].stderr()
    assert_same_training(cluster.run_dir, alone)
    records = read_metrics(cluster.run_dir / "metrics.jsonl")
    assert [r["event"] for r in records].count("run_start") == 1 and records[0]["world_size"] == 4
    assert not any(cluster.disk1.iterdir()), "node 1 wrote nothing"
    assert "Traceback" not in ours(nodes[0].stderr() + nodes[1].stderr())


def test_a_stop_to_one_launcher_resumes_with_rank_zero_on_a_node_that_never_saw_the_run(can_unshare, alone, tmp_path):
    """SIGTERM to node 0's torchrun alone: all four stop at one step with a checkpoint on node 0's disk.
    The resume uses c10d, where node 1 (empty disk) sorts first and gets rank 0: node 0 sends it the
    checkpoint, config and metrics, and node 1's disk then holds the whole run, equal to one process's."""
    cluster, port = Cluster(tmp_path), free_port()
    first = cluster.launch((torchrun(static(port, 0)), torchrun(static(port, 1))),
                           TINY + ["--output-dir", str(cluster.run_dir)])
    first[0].wait_for_step(4)
    held = [first[1].proc.pid, *first[1].workers().values()]
    for pid in held:  # hold the run at this step (the tiny run would end first) while node 0's launcher gets the signal
        os.kill(pid, signal.SIGSTOP)
    first[0].proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    for pid in held:
        os.kill(pid, signal.SIGCONT)
    assert 0 not in finish(*first)
    end = first[0].records()[-1]
    assert end["event"] == "run_end" and end["status"] == "interrupted", first[0].stderr()
    assert ckpt.latest(cluster.run_dir) is not None and not any(cluster.disk1.iterdir())

    port = free_port()  # node 1 sorts first: ("127.0.0.1", pid) < ("localhost", pid)
    resumed = cluster.launch((torchrun(c10d(port), "localhost"), torchrun(c10d(port), "127.0.0.1")),
                             ["--resume", str(cluster.run_dir)])
    until(lambda: resumed[1].workers() or resumed[1].proc.poll() is not None, "node 1's workers")
    assert 0 in resumed[1].workers(), "rank 0 on node 1, which has no run directory"
    assert finish(*resumed) == [0, 0], resumed[0].stderr() + resumed[1].stderr()
    moved = cluster.on_node1(cluster.run_dir)
    assert_same_training(moved, alone)
    assert [r["event"] for r in read_metrics(moved / "metrics.jsonl")].count("resume") == 1
    assert read_metrics(cluster.run_dir / "metrics.jsonl")[-1] == end, "node 0's processes wrote nothing"


def test_a_node_that_stops_answering_ends_the_other_and_the_run_resumes_in_one_process(can_unshare, alone, tmp_path):
    """c10d with rank 0 on node 0; node 0 freezes (SIGSTOP: a machine that hangs or drops off the
    network, no connection closed). Node 1's processes each end with one line, the first once the
    collective timeout (5 s here) passes; node 0's disk keeps its last checkpoint, and one process
    resumes it."""
    cluster, port = Cluster(tmp_path), free_port()
    nodes = cluster.launch((torchrun(c10d(port), "127.0.0.1"), torchrun(c10d(port), "localhost")),
                           TINY + ["--output-dir", str(cluster.run_dir), "--checkpoint-every-steps", "3"],
                           env={"NLI_QLORA_COLLECTIVE_TIMEOUT": "5"})
    nodes[0].wait_for_step(4)
    node0 = [nodes[0].proc.pid, *nodes[0].workers().values()]
    survivors = nodes[1].workers()
    assert set(survivors) == {2, 3}
    for pid in node0:
        os.kill(pid, signal.SIGSTOP)
    try:
        until(lambda: not alive(survivors.values()), "node 1's processes to end")
    finally:
        for pid in node0:
            os.kill(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGCONT)
    finish(*nodes)
    # found anywhere in a line: C++ warnings (torchrun's store client, gloo) are written to the same
    # stderr piece by piece, and a process's own line may land after the start of one of theirs
    said = dict(re.findall(r"python -m nli_qlora\.train: \[rank (\d+)\] ([^\n]*)", nodes[1].stderr()))
    assert sorted(said) == ["2", "3"], nodes[1].stderr()
    # the first of the two to time out says so; the other may see it leave before its own timeout fires
    # (seen once on a loaded 2-core CI machine), and then says that another process ended
    timed_out = "error: another process of this run did not answer for 5 s (NLI_QLORA_COLLECTIVE_TIMEOUT)"
    ended = "error: another process of this run ended, so this one stops too"
    assert any(line.startswith(timed_out) for line in said.values()), said
    assert all(line.startswith((timed_out, ended)) for line in said.values()), said
    assert ckpt.latest(cluster.run_dir) is not None
    ok(Run.resume(cluster.run_dir, ALONE))
    assert_same_training(cluster.run_dir, alone)


def test_nodes_whose_data_files_differ_stop_before_training(can_unshare, tmp_path):
    """The same path on both nodes, other rows behind it on node 1: every process ends with one line
    before the first step, instead of four processes training one model on two data sets."""
    import json

    from nli_qlora.data.builtin import tiny_split

    cluster, port = Cluster(tmp_path), free_port()
    rows = {split: tiny_split(split) for split in ("train", "validation", "test")}
    for disk, flip in ((cluster.path, False), (cluster.disk1, True)):
        for split, split_rows in rows.items():
            changed = [{**r, "hypothesis": r["hypothesis"].upper()} if flip and split == "train" else r for r in split_rows]
            (disk / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in changed))
    data = [arg for split in rows for arg in (f"--{split}-file", str(cluster.path / f"{split}.jsonl"))]
    nodes = cluster.launch((torchrun(static(port, 0)), torchrun(static(port, 1))),
                           TINY + data + ["--output-dir", str(cluster.run_dir)])
    assert 0 not in finish(*nodes)
    said = "\n".join(n.stderr() for n in nodes)
    assert "train data: process 2 read other rows than process 0" in said, said
    assert not any(r["event"] == "step" for r in nodes[0].records())


def test_a_bad_collective_timeout_is_one_line(monkeypatch, capsys):
    from nli_qlora.cli.train import main
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("NLI_QLORA_COLLECTIVE_TIMEOUT", "soon")
    assert main(["--preset", "tiny", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NLI_QLORA_COLLECTIVE_TIMEOUT='soon'" in err, err


@pytest.mark.parametrize("gloo", ["[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Timed out waiting 5000ms for "
                                  "send operation to complete", "Application timeout caused pair closure"])
def test_gloo_reports_a_timeout_two_ways_and_both_are_the_timeout_line(monkeypatch, gloo):
    """Which wording a process sees depends on where its collective was when the peer froze."""
    from nli_qlora.infra.distributed import PeerFailed, _peer_errors
    monkeypatch.setenv("NLI_QLORA_COLLECTIVE_TIMEOUT", "5")
    with pytest.raises(PeerFailed, match=r"did not answer for 5 s \(NLI_QLORA_COLLECTIVE_TIMEOUT\)"):
        with _peer_errors():
            raise RuntimeError(gloo)
