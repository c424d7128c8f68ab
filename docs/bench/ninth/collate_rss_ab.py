"""collate and rss_gb, previous (HEAD) against this tree, alternating, in one process: SNLI rows through SmolLM2's tokenizer.

Before running: git show 3249799:nli_qlora/data/batches.py > /tmp/ab/old_batches.py and
git show 3249799:nli_qlora/infra/machine.py > /tmp/ab/old_machine.py (the commit before the change)."""
import importlib.util, json, statistics, sys, time
import torch
from nli_qlora.data import batches as new_b
from nli_qlora.infra import machine as new_m
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m); return m
old_b = load("old_batches", "/tmp/ab/old_batches.py"); old_m = load("old_machine", "/tmp/ab/old_machine.py")
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained("/work/main/.devdata/smollm2-tokenizer")
rows = [json.loads(l) for l in open("/work/shared/data/snli/validation.jsonl")][:800]
enc = [new_b.Encoded(tuple(tok(f"Premise: {r['premise']}\nHypothesis: {r['hypothesis']}\nAnswer:")["input_ids"]), i % 3, i) for i, r in enumerate(rows)]
batches = [sorted(enc[i:i + 8], key=lambda r: len(r.prompt_ids)) for i in range(0, len(enc), 8)]
for b in batches:  # the same tensors
    x, y = old_b.collate(b, 0, 16), new_b.collate(b, 0, 16)
    assert all(torch.equal(x[k], y[k]) for k in x)
res = {"old collate": [], "new collate": [], "old rss": [], "new rss": []}
for rnd in range(5):
    for which, mod in (("old", old_b), ("new", new_b)):
        t = time.perf_counter()
        for b in batches:
            mod.collate(b, 0, 16)
        res[f"{which} collate"].append((time.perf_counter() - t) / len(batches) * 1e6)
    for which, mod in (("old", old_m), ("new", new_m)):
        t = time.perf_counter()
        for _ in range(1000):
            mod.rss_gb()
        res[f"{which} rss"].append((time.perf_counter() - t) / 1000 * 1e6)
for k, v in res.items():
    print(f"{k}: median {statistics.median(v):.1f} us per call (rounds: {', '.join(f'{x:.1f}' for x in v)})")
big = [sorted(enc[i:i + 256], key=lambda r: len(r.prompt_ids)) for i in range(0, 768, 256)]
r2 = {"old": [], "new": []}
for rnd in range(3):
    for which, mod in (("old", old_b), ("new", new_b)):
        t = time.perf_counter()
        for b in big:
            mod.collate(b, 0, 16)
        r2[which].append((time.perf_counter() - t) / len(big) * 1e3)
print("256-row batches:", {k: [round(x, 2) for x in v] for k, v in r2.items()}, "ms per batch")
