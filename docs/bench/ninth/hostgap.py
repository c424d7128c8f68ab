"""Where the loop's time between two training steps goes (outside timed_step), tiny preset, this CPU.

    python docs/bench/ninth/hostgap.py --preset tiny --quiet --output-dir /tmp/hg
(with PYTHONPATH pointing at another tree's nli_qlora to time that one)"""
import sys, time, collections, statistics
import nli_qlora.training.recipe as R
acc = collections.defaultdict(list)
def timed(name, fn):
    def wrapper(*a, **k):
        t = time.perf_counter(); out = fn(*a, **k); acc[name].append(time.perf_counter() - t); return out
    return wrapper
R.timed_step = timed("timed_step (the step)", R.timed_step)
for meth in ("_micro_batches", "_token_counts", "_log", "_boundary", "_train_one"):
    setattr(R.FineTune, meth, timed(meth, getattr(R.FineTune, meth)))
R.rss_gb = timed("rss_gb", R.rss_gb)
from nli_qlora.cli.train import main
main(sys.argv[1:])
n = len(acc["_train_one"])
for k, v in acc.items():
    print(f"{k:28s} calls {len(v):5d} median {statistics.median(v) * 1e3:7.3f} ms  sum {sum(v):6.2f} s")
one = sum(acc["_train_one"]); step = sum(acc["timed_step (the step)"])
print(f"_train_one less the step: {(one - step) / n * 1e3:.3f} ms a step")
