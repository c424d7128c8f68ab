#!/usr/bin/env bash
# twenty-fifth round, call 7 (warm): the GPU smoke's checks that read the GGUF; its `gguf` check converts into an
# empty cache (/tmp/nli_cache), so the new conversion runs cold there
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env7.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
ls /tmp/nli_cache 2>&1 | head -3
SMOKE_W=/tmp/smokew7 SMOKE_ONLY='^(gguf|train smollm2|score|tui|peer)' timeout 400 bash scripts/gpu_smoke.sh 2>&1 | tail -8
mv $OUT/smoke.log $OUT/smoke-call7.log
