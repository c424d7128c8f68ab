#!/usr/bin/env bash
# Two GPUs of one host, run two ways: one launch of 2 processes, and two launches (two simulated
# nodes, one GPU each, --nnodes 2, static rendezvous on localhost). Prints samples/s of each run
# from its summary.json (mean over steps). Fills the table in docs/data_parallel.md.
#   MODEL=/path/SmolLM2-135M-Instruct.Q4_1.gguf DATA_DIR=/path/snli bash scripts/multinode_gpu.sh
# DATA_DIR holds train_20k.jsonl, validation.jsonl, test.jsonl; EXTRA adds flags (e.g. --tokenizer DIR).
set -u
W=${W:-/tmp/multinode}; mkdir -p "$W"  # run directories (checkpoints stay out of $OUT, which returns 8 files at most)
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1  # NVLink multicast off, as the lent 2-GPU machines require
FLAGS="--preset smollm2 --model $MODEL --train-file $DATA_DIR/train_20k.jsonl --validation-file $DATA_DIR/validation.jsonl
  --test-file $DATA_DIR/test.jsonl --train-size 4000 --epochs 1 --batch-size 64 --validation-size 100
  --no-zero-shot-eval --no-test-eval --quiet ${EXTRA:-}"
RUN="python3 -m torch.distributed.run"
rm -rf "$W"/mn-one "$W"/mn-two
$RUN --standalone --nproc-per-node 2 -m nli_qlora.train $FLAGS --output-dir "$W/mn-one"
NODE="$RUN --nnodes 2 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port 29533"
CUDA_VISIBLE_DEVICES=1 $NODE --node-rank 1 -m nli_qlora.train $FLAGS --output-dir "$W/mn-two" &
CUDA_VISIBLE_DEVICES=0 $NODE --node-rank 0 -m nli_qlora.train $FLAGS --output-dir "$W/mn-two"
wait
for run in mn-one mn-two; do
  python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['time']; print(sys.argv[2], t['mean_samples_per_s'], 'samples/s')" \
    "$W/$run/summary.json" "$run"
done
