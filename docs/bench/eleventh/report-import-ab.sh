#!/usr/bin/env bash
# session 2026-12-02b call 2: GGUF half a; matplotlib imported during the test eval (HEAD 6252541 .base vs tree), alternating; --pad-to-multiple 32; EXITFAST probe
# .x: the packed .site, .devdata and full SNLI copy that docs/gpu_smoke.md describes; .base (report-import-ab): the
# earlier tree, `git archive --prefix=.base/ 6252541 nli_qlora scripts kernels_bench tui setup.cfg pyproject.toml`
cp .gguf_a/smol.partaa /tmp/
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz && tar -xJf .x/base.tar.xz
source scripts/gpu_env.sh > /dev/null
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null
D=$PWD/.devfull/snli
DATA="--tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet"
S="--model random:$TOK $DATA --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections"
R() { dir=$1; name=$2; shift 2; rm -rf /tmp/runs/$name; (cd $dir && PYTHONPATH=$OLDPWD/.site:/tmp/site:$PWD /usr/bin/time -f "$name %e s shell" python3 -m nli_qlora.train "$@" --output-dir /tmp/runs/$name); E=$(date +%s.%N); cp /tmp/runs/$name/metrics.jsonl $OUT/$name.jsonl; python3 -c "
import json; r=[json.loads(l) for l in open('/tmp/runs/$name/metrics.jsonl')]; e=r[-1]; t=[x for x in r if x['event']=='eval' and x['split']=='test'][-1]
print('$name', 'process_wall', e['process_wall_s'], 'final test eval', t['eval_time_s'], 'run_end->shell', round($E-e['time'],3), 'figures', sorted(p.name for p in __import__('pathlib').Path('/tmp/runs/$name').glob('*.png')))"; }
python3 -c "import torch; torch.zeros(1).cuda()"
for k in 1 2; do R .base old-$k $S; R . new-$k $S; R . p32-$k $S --pad-to-multiple 32; done
R . old-3 $S; R . new-3 $S
rm -rf /tmp/runs/xf; EXITFAST=1 /usr/bin/time -f "xf %e s shell" python3 docs/bench/eleventh/capture_probe.py $S --output-dir /tmp/runs/xf 2>&1 | grep -v Warn | tail -3; echo "xf shell_end $(date +%s.%N)"
python3 docs/bench/tenth/boundaries.py $OUT/*.jsonl
