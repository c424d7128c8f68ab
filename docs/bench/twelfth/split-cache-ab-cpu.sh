#!/usr/bin/env bash
# The split cache on a CPU: /tmp/abase holds `git archive 01097dc nli_qlora` (before it); the three SNLI splits of the
# published SmolLM2 command (1,000 train, 100 validation, 2,000 test rows) read in a fresh process, timed inside it.
# before: 01097dc; miss: this tree with an empty cache; hit: this tree, the cache the miss wrote.
D=$(realpath ${SNLI:-../shared/data/snli}); TREE=$PWD; cd /tmp  # not the tree: python -c puts the working folder first
C="import sys, time; from nli_qlora.data.read import load_split; t=time.perf_counter()
for s, f, n in (('train', '$D/train_20k.jsonl', 1000), ('validation', '$D/validation.jsonl', 100), ('test', '$D/test.jsonl', 2000)):
    load_split(s, f, '', n, False)
print(round(time.perf_counter()-t, 3))"
for k in 1 2 3 4; do
  rm -rf /tmp/split-ab-cache
  a=$(PYTHONPATH=/tmp/abase python -c "$C")
  b=$(NLI_QLORA_CACHE=/tmp/split-ab-cache PYTHONPATH=$TREE python -c "$C")
  c=$(NLI_QLORA_CACHE=/tmp/split-ab-cache PYTHONPATH=$TREE python -c "$C")
  echo "round $k: before $a s, miss $b s, hit $c s"
done
