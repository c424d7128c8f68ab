"""Shared fixtures of the benchmark suites.

- `device`, `device_name`: where the suites run (torch.cuda.get_device_name, or "cpu").
- `rig_for(model_name)`: the model as the loop builds it (nli_qlora.tools.tune.prepare), cached per
  session; only one model is resident at a time, so a case's peak memory is its own model's.
- `model_cache`: that one-resident cache, for suites that build models their own way (the peer).
- `snli_rows_for(rig)`: the SNLI validation prompts tokenized by the rig's tokenizer (skips when
  the data is missing).
- `case_memory`: reset the peak before a case, read it after (null on CPU); out-of-memory cases are
  recorded in the JSON's `nli_qlora_oom` list instead of failing the run.
- `round_times(benchmark, own)`: the measured rounds' seconds, warm-up excluded.

Results: run with --benchmark-json=FILE; machine_info gets the device, library versions, the git
commit and the size switch; each case's extra_info holds its derived figures (docs/benchmarks.md)."""

from __future__ import annotations

import dataclasses
import gc
import os
import subprocess
from pathlib import Path

import pytest
import torch

from kernels_bench import sizes

REPO = Path(__file__).resolve().parent.parent
_OOM: list[dict] = []


def pytest_configure(config):
    # the libraries' deprecation chatter says nothing about speed
    for line in ("ignore::FutureWarning", "ignore::DeprecationWarning",
                 "ignore:Paged optimizers are not supported on CPU"):
        config.addinivalue_line("filterwarnings", line)


# --- where and what -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@pytest.fixture(scope="session")
def device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def snli_dir() -> Path | None:
    """$NLI_SNLI_DIR, else ../shared/data/snli beside the repo, else shared/data/snli inside it (where
    the working tree travels to a GPU machine with shared/)."""
    candidates = [os.environ.get("NLI_SNLI_DIR"), REPO.parent / "shared/data/snli", REPO / "shared/data/snli"]
    for c in candidates:
        if c and (Path(c) / "validation.jsonl").is_file():
            return Path(c)
    return None


def config_for(model_name: str):
    """The settings a model is benchmarked with: the tiny preset for the tiny model, else the
    published recipe (seed preset) with that model."""
    from nli_qlora.config import preset
    if model_name == sizes.TINY:
        return preset("tiny")
    return dataclasses.replace(preset("seed"), model=model_name, tokenizer=os.environ.get("NLI_BENCH_TOKENIZER"))


# --- models: one resident at a time -------------------------------------------------------------

class ModelCache:
    """Keeps the last model built; asking for another frees it first, so peaks are per model."""

    def __init__(self, device: torch.device):
        self.device = device
        self.key = None
        self.value = None

    def get(self, key, build):
        if key != self.key:
            self.clear()
            self.value = build()
            self.key = key
        return self.value

    def clear(self) -> None:
        self.key = self.value = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@pytest.fixture(scope="session")
def model_cache(device):
    cache = ModelCache(device)
    yield cache
    cache.clear()


def build_or_skip(model_name: str, build):
    """Build, or skip the case with the one-line reason when the model cannot be had here."""
    from nli_qlora.infra.errors import UserError
    try:
        return build()
    except UserError as err:
        pytest.skip(f"{model_name}: {err}")
    except ImportError as err:  # e.g. the gguf package for SmolLM2
        pytest.skip(f"{model_name}: {err}")


@pytest.fixture(scope="session")
def rig_for(model_cache, device):
    from nli_qlora.tools.tune import prepare

    def get(model_name: str, dequantize_base: bool = False):
        cfg = dataclasses.replace(config_for(model_name), dequantize_base=dequantize_base)
        return model_cache.get(("rig", model_name, dequantize_base),
                               lambda: build_or_skip(model_name, lambda: prepare(cfg, device)))
    return get


@pytest.fixture(scope="session")
def snli_rows_for():
    """SNLI validation prompts through a rig's tokenizer and template, cached per model."""
    from nli_qlora.tools.tune import encoded_rows
    cache: dict[str, list] = {}

    def get(rig):
        folder = snli_dir()
        if folder is None:
            pytest.skip("SNLI data missing: set NLI_SNLI_DIR to a folder with validation.jsonl")
        if rig.cfg.model not in cache:
            cache[rig.cfg.model] = encoded_rows(rig.cfg, rig.tokenizer, "validation",
                                                str(folder / "validation.jsonl"), sizes.SNLI_ROWS)
        return cache[rig.cfg.model]
    return get


# --- measuring ----------------------------------------------------------------------------------

class CaseMemory:
    def __init__(self, device: torch.device):
        self.device = device
        self.start: int | None = None

    def reset(self) -> None:
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)

    def start_gb(self) -> float | None:
        """What was allocated at the reset: beside the peak, it shows what a case found resident (the
        model, and anything an earlier case left behind) apart from what it added itself."""
        return None if self.start is None else round(self.start / 1e9, 3)

    def peak_gb(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return round(torch.cuda.max_memory_allocated(self.device) / 1e9, 3)

    def out_of_memory(self, name: str, **detail) -> None:
        """Record a case that did not fit and skip it; call outside the `except` block so the
        traceback (and the activations it holds) is gone first."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        _OOM.append({"name": name, **detail})
        pytest.skip(f"out of memory: {name}")


@pytest.fixture
def case_memory(device) -> CaseMemory:
    memory = CaseMemory(device)
    memory.reset()
    return memory


def round_times(benchmark, own: list[float]) -> list[float]:
    """pytest-benchmark's measured rounds (warm-up excluded); with --benchmark-disable the target
    ran once and only our own timing of that call exists."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.data:
        return list(stats.stats.data)
    return own[-1:]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- results: machine_info and the JSON ---------------------------------------------------------

def _git_commit() -> str | None:
    if os.environ.get("NLI_GIT_COMMIT"):
        return os.environ["NLI_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def pytest_benchmark_update_machine_info(config, machine_info):
    from kernels_bench.hardware import lookup
    from nli_qlora.infra.machine import versions

    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = lookup(name) if cuda else None
    machine_info["nli_qlora"] = {
        "bench_size": sizes.SIZE,
        "device": name,
        "capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
        "total_memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 1e9, 2) if cuda else None,
        "peak_bf16_flops": peak.bf16_flops if peak else None,
        "versions": {**versions(), "cuda": torch.version.cuda, "python": machine_info.get("python_version")},
        "git_commit": _git_commit(),
        "snli_dir": str(snli_dir()) if snli_dir() else None,
    }


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["nli_qlora_oom"] = list(_OOM)
