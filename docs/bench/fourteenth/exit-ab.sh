# the tiny preset's whole command from the shell, before (7076f16: gc.freeze + sys.exit) and after (os._exit)
for k in 1 2 3; do
  for side in old new; do
    if [ $side = old ]; then dir=/tmp/old; else dir=/work/main; fi
    rm -rf /tmp/exitab-$side-$k
    s=$(date +%s.%N)
    (cd $dir && PYTHONPATH=$dir python -m nli_qlora.train --preset tiny --quiet --output-dir /tmp/exitab-$side-$k 2>/tmp/exitab-$side-$k.err)
    e=$(date +%s.%N)
    python - $side $k $s $e <<'PY'
import json, sys
side, k, s, e = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rs = [json.loads(l) for l in open(f"/tmp/exitab-{side}-{k}/metrics.jsonl")]
end = rs[-1]
print(side, k, "shell", round(e - s, 2), "process_wall_s at run_end", end["process_wall_s"], "after run_end", round(e - s - end["process_wall_s"], 2),
      "stderr bytes", len(open(f"/tmp/exitab-{side}-{k}.err").read()))
PY
  done
done
