#!/usr/bin/env bash
# session 13, call C1: --fused-norm on the GPU: the kernel, the step, the whole command A/B (flag alternating), tests, smoke check
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
python3 - > $OUT/kernel.log 2>&1 <<'PY'
import torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
from transformers.models.llama.modeling_llama import LlamaRMSNorm
print("CUDA kernel for _fused_rms_norm:", torch._C._dispatch_has_kernel_for_dispatch_key("aten::_fused_rms_norm", "CUDA"),
      "backward:", torch._C._dispatch_has_kernel_for_dispatch_key("aten::_fused_rms_norm_backward", "CUDA"))
n = LlamaRMSNorm(576, eps=1e-5).cuda().to(torch.bfloat16).requires_grad_(False)
for name, f in [("transformers", lambda x: n(x)), ("F.rms_norm", lambda x: F.rms_norm(x, (576,), n.weight, 1e-5))]:
    x = torch.randn(8, 64, 576, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    f(x).sum().backward(); torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        y = f(x); y.backward(torch.ones_like(y)); torch.cuda.synchronize()
    ks = [e.name for e in p.events() if str(e.device_type).endswith("CUDA")]
    print(name, len(ks), "kernels (forward+backward, ones_like included):", sorted(set(k[:50] for k in ks)))
PY
cat $OUT/kernel.log
P="--model random:$TOK --tokenizer $TOK --batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections"
for f in "" "--fused-norm" "" "--fused-norm"; do python3 scripts/profile_step.py $P $f --steps 10 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('profile', d['fused_norm'], d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'], d['host_gap_ms_per_step'])"; done 2>&1 | tee $OUT/profile.log
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1  # the split cache written
for k in 1 2 3; do
  /usr/bin/time -f "plain-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/plain-$k
  /usr/bin/time -f "norm-$k %e s shell" python3 -m nli_qlora.train $ARGS --fused-norm --output-dir /tmp/runs/norm-$k
done > $OUT/whole-ab.log 2>&1
for r in plain-1 norm-1 plain-2 norm-2 plain-3 norm-3; do gzip -c /tmp/runs/$r/metrics.jsonl > $OUT/w-$r.jsonl.gz; done
tar -czf $OUT/whole.tgz -C $OUT $(cd $OUT && ls w-*.jsonl.gz) whole-ab.log && rm $OUT/w-*.jsonl.gz
python3 -m pytest tests/test_fused_norm.py tests/test_memory.py -q -p no:cacheprovider -n 0 2>&1 | tail -3
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew SMOKE_ONLY='^fused norm' bash scripts/gpu_smoke.sh 2>&1 | tail -3; grep -A1 "largest relative" $OUT/smoke.log | head -3
python3 - <<'PY'
import json, gzip, os, tarfile, statistics, io
t = tarfile.open(os.environ["OUT"] + "/whole.tgz")
for r in ["plain-1", "norm-1", "plain-2", "norm-2", "plain-3", "norm-3"]:
    rs = [json.loads(l) for l in gzip.open(t.extractfile(f"w-{r}.jsonl.gz"))]
    s, e = rs[0], rs[-1]
    st = [x for x in rs if x["event"] == "step"]
    cap = round(sum(x["step_time_s"] for x in st if x["captured"]), 2)
    ev = [x["eval_time_s"] for x in rs if x["event"] == "eval"]
    print(r, "norms", s["model"].get("fused_norms"), "run_start", round(s["time"] - s["process_start"], 2), "run_end", e.get("process_wall_s"),
          "median_step_ms", round(statistics.median(x["step_time_s"] for x in st if not x["captured"]) * 1e3, 2), "captures_s", cap,
          "evals_s", round(sum(ev), 2), "test_evals", [round(x["eval_time_s"], 3) for x in rs if x["event"] == "eval" and x["split"] == "test"],
          "final_loss", st[-1]["loss"], "test_bacc", [round(x["balanced_accuracy"], 4) for x in rs if x["event"] == "eval" and x["split"] == "test"])
PY
grep shell $OUT/whole-ab.log
