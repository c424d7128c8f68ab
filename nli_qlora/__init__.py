"""nli-qlora: fine-tune causal language models with QLoRA for natural language inference."""

import logging
import time

__version__ = "0.1.0"

# The fallback for when this process started, where /proc cannot say (infra.machine.process_start).
IMPORTED_AT = time.time()


class _NoHubKernelNotice(logging.Filter):
    """bitsandbytes (0.50) logs a warning at import on every CPU with AVX512-BF16 when the optional
    `kernels` package is missing: it would fetch a CPU 4-bit kernel from the Hugging Face hub at run
    time. We do not want code fetched from the hub at import, and bitsandbytes falls back to its own
    bundled AVX512-BF16 kernel, so the line tells a user nothing they can act on. Installed here,
    before anything can import bitsandbytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward from kernels-community")


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_NoHubKernelNotice())

# bitsandbytes' import without torch's inductor (infra.deferred_compile); transformers' without
# scikit-learn and scipy (infra.deferred_import), with one scan of its model folders
# (infra.import_structure_cache) and without a scan of every installed file (infra.distribution_map):
# also before anything imports them
from nli_qlora.infra import deferred_compile, deferred_import, distribution_map, import_structure_cache  # noqa: E402

deferred_compile.install()
deferred_import.install()
import_structure_cache.install()
distribution_map.install()
