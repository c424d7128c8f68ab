#!/usr/bin/env bash
# twenty-third round, call 3 (warm after call 2, whose timeout ended it during the attention check): the smoke's
# attention check and the bench suites. Then two calls carried the GGUF's first two thirds into /tmp:
#   run(carry=[".g1"]): cp .g1/gp00 /tmp/        run(carry=[".g2"]): cp .g2/gp01 /tmp/
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && source scripts/gpu_env.sh > $OUT/env3.log 2>&1; export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor; SMOKE_W=/tmp/smokew3 SMOKE_ONLY='^(attention|bench suites)' timeout 300 bash scripts/gpu_smoke.sh 2>&1 | tail -5; mv $OUT/smoke.log $OUT/smoke-call3.log
