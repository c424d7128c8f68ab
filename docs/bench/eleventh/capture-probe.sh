#!/usr/bin/env bash
# session 2026-12-02b call 1: capture phases, NOEMPTY A/B, pad multiple 64, report and exit time
# .x: the packed .site, .devdata and full SNLI copy that docs/gpu_smoke.md describes; .base (report-import-ab): the
# earlier tree, `git archive --prefix=.base/ 6252541 nli_qlora scripts kernels_bench tui setup.cfg pyproject.toml`
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > /dev/null
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null
D=$PWD/.devfull/snli
DATA="--tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet"
S="--model random:$TOK $DATA --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections"
R() { name=$1; shift; rm -rf /tmp/runs/$name; /usr/bin/time -f "$name %e s shell" python3 docs/bench/eleventh/capture_probe.py "$@" --output-dir /tmp/runs/$name 2> >(grep -v Warn >&2); echo "$name shell_end $(date +%s.%N)"; cp /tmp/runs/$name/metrics.jsonl $OUT/$name.jsonl; python3 -c "
import json,sys; r=[json.loads(l) for l in open('/tmp/runs/$name/metrics.jsonl')]; e=r[-1]; s=r[0]
print('$name', 'run_end', e['time'], 'process_wall', e['process_wall_s'], 'startup', s.get('startup'))"; }
python3 -c "import torch; torch.zeros(1).cuda()"
for k in 1 2; do R d16-$k $S; NOEMPTY=1 R n16-$k $S; done
R d64 $S --pad-to-multiple 64; NOEMPTY=1 R n64 $S --pad-to-multiple 64
NOEMPTY=1 R n32 $S --pad-to-multiple 32
python3 docs/bench/tenth/boundaries.py $OUT/*.jsonl
