#!/usr/bin/env bash
# A/B of infra/import_structure_cache.py on a CPU: /tmp/abase holds `git archive 37b859a nli_qlora`; $1: a folder with
# another transformers to put first on PYTHONPATH, or nothing
X=$1
C='import time; import nli_qlora, torch; t=time.perf_counter(); import transformers; from transformers import LlamaForCausalLM, PhiForCausalLM; import peft; print(round(time.perf_counter()-t, 3))'
for k in 1 2 3 4 5 6; do
  a=$(cd /tmp && PYTHONPATH=$X${X:+:}/tmp/abase python -c "$C" 2>/dev/null | tail -1)
  b=$(cd /tmp && PYTHONPATH=$X${X:+:}/work/main python -c "$C" 2>/dev/null | tail -1)
  echo "pair $k: transformers, its model classes and peft, after torch: $a s before, $b s after"
done
