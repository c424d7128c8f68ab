"""Probe: where a captured step's time goes, and what the report and exit cost. Runs the train command
in this process with timers around: torch.cuda.graph enter (sync + empty_cache + host cache release)
and exit (capture_end: instantiate), each _forward_backward (warm-up / capture), the first replay of
each graph, every evaluate(), write_report. NOEMPTY=1: graph enter without the two cache releases."""
import atexit, os, sys, time, runpy, collections
if os.environ.get("EXITFAST"):  # registered first: runs last of the atexit handlers
    def _fast():
        sys.stdout.flush(); sys.stderr.flush(); os._exit(0)
    atexit.register(_fast)
import torch
T = collections.defaultdict(list)
def timed(name, fn, sync=False):
    def w(*a, **k):
        if sync: torch.cuda.synchronize()
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            if sync: torch.cuda.synchronize()
            T[name].append(time.perf_counter() - t)
    return w
G = torch.cuda.graph
enter0, exit0 = G.__enter__, G.__exit__
def enter(self):
    if os.environ.get("NOEMPTY"):
        ec, hc = torch.cuda.empty_cache, torch._C._host_emptyCache
        torch.cuda.empty_cache = lambda: None; torch._C._host_emptyCache = lambda: None
        try: return enter0(self)
        finally: torch.cuda.empty_cache, torch._C._host_emptyCache = ec, hc
    return enter0(self)
G.__enter__ = timed("graph_enter", enter)
G.__exit__ = timed("graph_exit(instantiate)", exit0)
torch.cuda.empty_cache = timed("empty_cache(any)", torch.cuda.empty_cache)
import nli_qlora.training.step as st
fb0 = st.GraphedForwardBackward._forward_backward
def fb(self, inputs, scale):
    cap = torch.cuda.is_current_stream_capturing()
    t = time.perf_counter(); r = fb0(self, inputs, scale)
    if not cap: torch.cuda.synchronize()
    T["fb_capture" if cap else "fb_warmup"].append(time.perf_counter() - t); return r
st.GraphedForwardBackward._forward_backward = fb
st.GraphedForwardBackward._capture_rng_neutral = timed("capture_total", st.GraphedForwardBackward._capture_rng_neutral, sync=True)
call0 = st.GraphedForwardBackward.__call__
def call(self, batch, scale):
    key = tuple((k, tuple(v.shape)) for k, v in sorted(batch.items()) if k != "index")
    if key in self.graphs: return call0(self, batch, scale)
    torch.cuda.synchronize(); t = time.perf_counter()
    r = call0(self, batch, scale); torch.cuda.synchronize()
    T["capture_call_incl_first_replay"].append(time.perf_counter() - t); return r
st.GraphedForwardBackward.__call__ = call
import nli_qlora.training.evaluate as ev
import nli_qlora.training.recipe as rc
rc.evaluate = timed("evaluate", ev.evaluate)
import nli_qlora.cli.train as ct
ct.write_report = timed("write_report", ct.write_report)
def show():
    print("PROBE", os.environ.get("NOEMPTY", "0"), " ".join(f"{k}={[round(x*1000,1) for x in v]}" for k, v in T.items()), file=sys.stderr)
    print("PROBE_EXIT_AT", time.time(), file=sys.stderr)
atexit.register(show)
sys.argv = ["nli_qlora.train"] + sys.argv[1:]
runpy.run_module("nli_qlora.train", run_name="__main__")
