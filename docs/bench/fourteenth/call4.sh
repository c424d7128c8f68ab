#!/usr/bin/env bash
# fourteenth round, call A: Triton's first launches (cold and warm disk cache); the GGUF's first half into /tmp
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
cp .gguf_a/smol.partaa /tmp/
source scripts/gpu_env.sh > $OUT/env.log 2>&1
python3 docs/bench/fourteenth/tritonfirst.py > $OUT/tritonfirst-cold.log 2>&1; head -7 $OUT/tritonfirst-cold.log
python3 docs/bench/fourteenth/tritonfirst.py > $OUT/tritonfirst-warm.log 2>&1; head -7 $OUT/tritonfirst-warm.log
