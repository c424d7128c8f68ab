#!/usr/bin/env bash
# Data parallelism on the two GPUs of one host, three ways, for docs/data_parallel.md's table: one
# GPU (one launch of 1 process), one launch of 2 processes, and two launches of one GPU each (two
# simulated nodes: --nnodes 2, static rendezvous on localhost, CUDA_VISIBLE_DEVICES 0 and 1). Prints
# samples/s of each run from its metrics.jsonl (the steps after the first 10) and the ratio to one GPU.
#   MODELS="/path/SmolLM2-135M-Instruct.Q4_1.gguf random:phi-2" DATA_DIR=/path/snli bash scripts/multinode_gpu.sh
# DATA_DIR holds train_20k.jsonl, validation.jsonl, test.jsonl; EXTRA adds flags (e.g. --tokenizer DIR,
# which random:phi-2 needs); ROWS sets the training rows (default 4480: 70 steps of the global batch 64).
set -u
W=${W:-/tmp/multinode}; mkdir -p "$W"  # run directories (checkpoints stay out of $OUT, which returns 8 files at most)
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1  # NVLink multicast off, as the lent 2-GPU machines require
RUN="python3 -m torch.distributed.run"
rate() {  # samples/s over the steps after the first 10 (CUDA-graph captures of new shapes happen early)
  python3 -c "import json,sys; s=[r for r in map(json.loads, open(sys.argv[1])) if r['event']=='step'][10:]
print(round(sum(r['samples'] for r in s) / sum(r['step_time_s'] for r in s), 1))" "$1/metrics.jsonl"; }
for MODEL in ${MODELS:-$MODEL}; do
  FLAGS="--preset smollm2 --model $MODEL --train-file $DATA_DIR/train_20k.jsonl --validation-file $DATA_DIR/validation.jsonl
    --test-file $DATA_DIR/test.jsonl --train-size ${ROWS:-4480} --epochs 1 --batch-size 64 --validation-size 100
    --no-zero-shot-eval --no-test-eval --quiet ${EXTRA:-}"
  rm -rf "$W"/mn-1gpu "$W"/mn-one "$W"/mn-two
  CUDA_VISIBLE_DEVICES=0 $RUN --standalone --nproc-per-node 1 -m nli_qlora.train $FLAGS --output-dir "$W/mn-1gpu"
  $RUN --standalone --nproc-per-node 2 -m nli_qlora.train $FLAGS --output-dir "$W/mn-one"
  NODE="$RUN --nnodes 2 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port 29533"
  CUDA_VISIBLE_DEVICES=1 $NODE --node-rank 1 -m nli_qlora.train $FLAGS --output-dir "$W/mn-two" &
  CUDA_VISIBLE_DEVICES=0 $NODE --node-rank 0 -m nli_qlora.train $FLAGS --output-dir "$W/mn-two"
  wait
  one=$(rate "$W/mn-1gpu")
  for run in mn-1gpu mn-one mn-two; do
    r=$(rate "$W/$run"); echo "$(basename $MODEL) $run $r samples/s $(python3 -c "print(round($r / $one, 2))")x"
  done
done
