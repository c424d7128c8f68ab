#!/usr/bin/env bash
# nineteenth round, call 4: the previous revision (.base, ef6d25b) and this one (the members' LoRA input gradients in one
# kernel; the update queued before the step's read-back and undone when not finite) alternating, after one warm-up run:
# the captured step's parts at batch 8 x 64 (SmolLM2's and Phi-2's configurations, random weights), the whole SmolLM2
# command (random weights, the full SNLI files, 2,000 test rows, the six options) and the score command on 2,000 rows;
# then the memory estimate against the measured peak (Phi-2, batch 8 and 64, the default options)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
probe() {  # probe TREE MODEL [ARGS]: the step's parts, one line
  (cd $1 && timeout 100 python3 $OLDPWD/docs/bench/seventeenth/stepprobe.py --model $2 --tokenizer $TOK "${@:3}" 2>>$OUT/probe.err \
    | python3 -c "import json,sys; d=json.load(sys.stdin); a=d['as-is']; print('$1', '$2'[-10:], '${*:3}', 'wall', [x['wall'] for x in a], 'graph', [x['g_graph'] for x in a], 'opt', [x['g_opt'] for x in a], 'idle', [x['g_idle'] for x in a], 'timed', d['timed_step_ms_per_step'])")
}
for k in 1 2; do for tree in .base .; do probe $tree random:$TOK; done; done 2>&1 | tee $OUT/runs-ab.log
for tree in .base .; do probe $tree random:phi-2; done 2>&1 | tee -a $OUT/runs-ab.log
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
for k in 1 2; do
  (cd .base && /usr/bin/time -f "base-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/base-$k)
  /usr/bin/time -f "new-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
done > $OUT/whole-ab.log 2>&1
(cd .base && /usr/bin/time -f "score base %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/new-1 --input /tmp/test2000.jsonl --output /tmp/p-base.jsonl --quiet) >> $OUT/whole-ab.log 2>&1
/usr/bin/time -f "score new %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/new-1 --input /tmp/test2000.jsonl --output /tmp/p-new.jsonl --quiet >> $OUT/whole-ab.log 2>&1
tar -czf $OUT/whole-ab.tgz -C /tmp/runs base-1/metrics.jsonl new-1/metrics.jsonl base-2/metrics.jsonl new-2/metrics.jsonl
python3 - <<'PY' | tee -a $OUT/whole-ab.log
import json, os, statistics, tarfile
t = tarfile.open(os.environ["OUT"] + "/whole-ab.tgz")
for r in ["base-1", "new-1", "base-2", "new-2"]:
    rs = [json.loads(l) for l in t.extractfile(f"{r}/metrics.jsonl")]
    s, e = rs[0], rs[-1]
    st = [x for x in rs if x["event"] == "step"]
    ev = [x for x in rs if x["event"] == "eval"]
    print(r, "imports", s["startup"].get("imports_s"), "model_s", s["startup"]["model_s"], "run_start", round(s["time"] - s["process_start"], 2),
          "first_step", round(st[0]["time"] - s["process_start"], 2), "median_step_ms", round(statistics.median(x["step_time_s"] for x in st if not x["captured"]) * 1e3, 2),
          "run", round(e["time"] - s["time"], 2), "run_end", e.get("process_wall_s"), "peak_gb", e.get("gpu_mem_peak_gb"), "skipped", e.get("skipped_steps"),
          "final_loss", st[-1]["loss"], "test_bacc", [x for x in ev if x["split"] == "test"][-1]["balanced_accuracy"])
a = [json.loads(l) for l in open("/tmp/p-base.jsonl")]; b = [json.loads(l) for l in open("/tmp/p-new.jsonl")]
print(f"score: {sum(x['predicted'] == y['predicted'] for x, y in zip(a, b))} of {len(a)} predictions the same")
PY
grep shell $OUT/whole-ab.log
timeout 150 python3 scripts/check_memory_estimate.py --batch-sizes 8 64 --checkpointing off --out $OUT/memory.json 2>&1 | tail -5
