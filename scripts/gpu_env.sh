# Source this at the start of a command on the lent GPU machine (see docs/benchmarks.md):
#   source scripts/gpu_env.sh
# Installs the carried wheels (.whl/: bitsandbytes, gguf; the GPU image lacks them) into /tmp/site,
# points the benchmarks at the carried SNLI copy, and records the machine.
set -e
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=$PWD/.site:/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}  # .site: unzipped wheels (docs/gpu_smoke.md)
export PYTHONUNBUFFERED=1 NLI_SNLI_DIR=$PWD/.devdata/snli NLI_QLORA_CACHE=/tmp/nli_cache
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The lent image sets PYTHONDONTWRITEBYTECODE=1 and ships torch and sympy without .pyc files, so every
# process compiled their sources again (imports 14-18 s instead of 8; docs/benchmarks.md). A pip install
# writes them at install time: write them once into /tmp (the version line below does), as users have them.
export PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=/tmp/pyc
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bnb', bitsandbytes.__version__)"
set +e
