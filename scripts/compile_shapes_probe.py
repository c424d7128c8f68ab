"""The train command with --compile, its layers compiled for static or dynamic shapes: a probe for
issue 14's open question (docs/benchmarks.md, sixth round), not an option of the tool.

    python scripts/compile_shapes_probe.py {dynamic,static} TRAIN_ARGS...

`dynamic`: one graph with symbolic batch and width, what --compile did before the seventh round (and
still does past 8 shapes). `static`: each shape the run meets compiles on its own
(nn.Module.compile(dynamic=False), dynamo's recompile limit raised so that every width compiles
instead of falling back to eager), what --compile does now for a run's few shapes; the measurement
behind that choice (docs/benchmarks.md, seventh round). Prints dynamo's compile times and cache
counters to stderr at exit; the metrics file has every step's time."""
from __future__ import annotations

import atexit
import runpy
import sys

import torch


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode not in ("dynamic", "static"):
        sys.exit(f"{sys.argv[0]}: error: first argument: dynamic or static, not {mode!r}")
    compile_module = torch.nn.Module.compile

    def compile_as_asked(self, *a, **k):
        return compile_module(self, *a, **{**k, "dynamic": mode == "dynamic"})

    torch.nn.Module.compile = compile_as_asked
    torch._dynamo.config.recompile_limit = 64

    @atexit.register
    def report() -> None:
        from torch._dynamo.utils import compile_times, counters
        print(compile_times(repr="str"), file=sys.stderr)
        print({k: dict(v) for k, v in counters.items() if k in ("inductor", "aot_autograd", "stats")}, file=sys.stderr)

    sys.argv = ["nli_qlora.train", *args, "--compile"]
    runpy.run_module("nli_qlora.train", run_name="__main__")


if __name__ == "__main__":
    main()
