#!/usr/bin/env bash
# twenty-second round, call 2: where an evaluation's time goes now (evalprobe.py, batch by batch), in the train
# command (64 rows, one epoch, 100 validation and 2,000 test rows) and the score command (2,000 rows), at
# evaluation batches of 256 (the default), 1,024 and 2,048 rows, and with every evaluation batch padded to a
# multiple of 64; twice, alternating. Then the score command sampled (time-weighted).
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
P=docs/bench/twentysecond/evalprobe.py
python3 -m nli_qlora.train $ARGS --train-size 64 --epochs 1 --output-dir /tmp/runs/ckpt > /dev/null 2>&1
head -2000 $D/test.jsonl > /tmp/test2000.jsonl
python3 -m nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test2000.jsonl --output /tmp/p-warm.jsonl --quiet
for k in 1 2; do
  for v in 256 1024 2048 256-64 1024-64; do
    bs=${v%-*}; pad=$([ "$v" != "$bs" ] && echo 64 || echo 0)
    EVAL_PAD=$pad timeout 60 python3 $P train $ARGS --train-size 64 --epochs 1 --eval-batch-size $bs --output-dir /tmp/runs/e-$v-$k 2>&1 | sed "s/^/train $v $k /"
    EVAL_PAD=$pad timeout 60 python3 $P score --checkpoint /tmp/runs/ckpt --input /tmp/test2000.jsonl --output /tmp/p-$v-$k.jsonl --quiet --batch-size $bs 2>&1 | sed "s/^/score $v $k /"
  done
done > $OUT/evalprobe.log 2>&1
python3 - <<'PY' | tee $OUT/evalprobe-summary.log
import json, collections
rows = collections.defaultdict(list)
for line in open("/dev/stdin" if False else __import__("os").environ["OUT"] + "/evalprobe.log"):
    parts = line.split(" ", 4)
    if len(parts) < 5 or parts[3] != "PREDICT":
        continue
    cmd, v, k, _, rec = parts; rec = json.loads(rec)
    b = rec["batches"]
    rows[(cmd, v)].append(f"{rec['rows']}r/{len(b)}b {rec['total_ms']:.0f} ms (launch {sum(x[4] for x in b):.0f}, wait {sum(x[5] for x in b):.0f}, widths {sorted(set(x[1] for x in b))})")
for key, v in rows.items():
    print(*key, " | ".join(v))
PY
python3 scripts/run_timeline.py /tmp/runs/e-* > $OUT/timelines.jsonl
python3 docs/bench/twentysecond/sample_command.py $OUT/sample-score nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test2000.jsonl --output /tmp/ps.jsonl --quiet
gzip $OUT/sample-score.folded $OUT/evalprobe.log
python3 -c "import json; a=[json.loads(l)['predicted'] for l in open('/tmp/p-256-1.jsonl')]; [print(v, sum(x==y for x,y in zip(a,[json.loads(l)['predicted'] for l in open(f'/tmp/p-{v}-1.jsonl')])), 'of', len(a), 'predictions the same') for v in ('1024','2048','256-64','1024-64')]" | tee -a $OUT/evalprobe-summary.log
