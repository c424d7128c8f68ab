#!/usr/bin/env bash
# sixteenth round, call 1: the two `fused rope` smoke checks (the fifteenth round's fixes: no daemon, the
# device index); SDPA backends alone and in the model (sdpaprobe.py); what a dropped trainer leaves
# allocated (wsprobe.py); every kernel of the SmolLM2 step (profile_step.py --top 400)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1; tail -2 $OUT/env.log
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null
B=docs/bench/sixteenth
SMOKE_W=/tmp/smokew SMOKE_ONLY='^fused rope' timeout 240 bash scripts/gpu_smoke.sh 2>&1 | tail -4
grep "largest relative" $OUT/smoke.log | head; mv $OUT/smoke.log $OUT/smoke-rope.log
for b in default cudnn flash efficient; do timeout 90 python3 $B/sdpaprobe.py micro $b 2>&1 | grep -v Warning; done > $OUT/sdpa-micro.jsonl
python3 -c "
import json; rows=[json.loads(l) for l in open('$OUT/sdpa-micro.jsonl') if l.startswith('{')]
for m in ('smollm2','phi-2'):
  for bt in (8,256):
    for b in ('default','cudnn','flash','efficient'):
      r=[x for x in rows if x['model']==m and x['batch']==bt and x['backend']==b and 'first_ms' in x]
      if r: print(m, bt, b, 'first', round(sum(x['first_ms'] for x in r),1), 'ms over', len(r), 'lengths; steady', round(sum(x['steady_ms'] for x in r)/len(r),4), 'ms mean')
"
for b in default flash default flash; do timeout 120 python3 $B/sdpaprobe.py model $b $TOK 2>&1 | grep '^{'; done > $OUT/sdpa-model.jsonl
python3 -c "
import json; rows=[json.loads(l) for l in open('$OUT/sdpa-model.jsonl')]
for i in range(0, 4):
  pass
import itertools
runs=[]; cur=None
for r in rows:
  if r['what']=='load': cur=[r]; runs.append(cur)
  else: cur.append(r)
for run in runs:
  b=run[0]['backend']; e=[x for x in run if x['what']=='eval']; t=[x for x in run if x['what']=='train']; e2=[x for x in run if x['what']=='eval-again']
  print(b, 'load', run[0]['s'], 's; eval first', round(sum(x['first_ms'] for x in e)), 'again', round(sum(x['again_ms'] for x in e)), 'ms;',
        'eval-again first', round(sum(x['first_ms'] for x in e2)), 'ms; captures', [x['capture_ms'] for x in t], 'steps', [x['median_step_ms'] for x in t])
"
timeout 90 python3 $B/wsprobe.py $TOK 2>&1 | grep '^{' | tee $OUT/wsprobe.jsonl
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope --top 400"
timeout 100 python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P > $OUT/profile-smol-all.json 2>/dev/null
python3 -c "import json; d=json.load(open('$OUT/profile-smol-all.json')); print(d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'])"
