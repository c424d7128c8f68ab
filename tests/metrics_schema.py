"""docs/metrics.md (schema 1) as data: the fields every event must carry, and their types.

`problems(record)` lists what is wrong with one record; `run_problems(records)` checks the order of
a whole completed run. Readers ignore unknown fields, so extra fields are never a problem."""

from __future__ import annotations

SCHEMA = 1
LABELS = ["entailment", "neutral", "contradiction"]

NULL = type(None)
INT = (int,)
NUMBER = (int, float)
STR = (str,)
BOOL = (bool,)


def nullable(types: tuple) -> tuple:
    return types + (NULL,)


# A field's spec is a tuple of types, a dict of sub-fields, or {"*": spec} for a mapping whose every
# value follows spec (the per-split `data`).
COMMON = {"event": STR, "schema": INT, "time": NUMBER, "elapsed_s": NUMBER}

SPLIT_DATA = {"file": STR, "rows_read": INT, "unlabeled_dropped": INT, "bad_skipped": INT, "selected": INT}

EVENTS: dict[str, dict] = {
    "run_start": {
        "run_name": STR, "run_dir": STR, "config": (dict,),
        "model": {"name": STR, "architecture": STR, "dtype": STR, "quantization": STR},
        "device": {"type": STR, "name": STR, "count": INT, "total_memory_gb": nullable(NUMBER)},
        "world_size": INT,
        "params": {"trainable": INT, "total": INT, "total_packed": INT, "trainable_percent": NUMBER},
        "lora_targets": {"matched": (list,), "unmatched": (list,)},
        "data": {"*": SPLIT_DATA},
        "planned": {"epochs": INT, "steps_per_epoch": INT, "total_steps": INT, "samples": INT},
        "versions": {"torch": STR, "transformers": STR, "peft": STR, "bitsandbytes": STR},
    },
    "resume": {"checkpoint": STR, "step": INT, "epoch": INT},
    "warning": {"message": STR, "kind": STR},
    "step": {
        "step": INT, "epoch": INT, "epoch_step": INT, "steps_per_epoch": INT, "loss": nullable(NUMBER),
        "lr": NUMBER, "grad_norm": nullable(NUMBER), "samples": INT, "tokens": INT, "padded_tokens": INT,
        "padding_fraction": NUMBER, "step_time_s": NUMBER, "samples_per_s": NUMBER, "tokens_per_s": NUMBER,
        "gpu_mem_allocated_gb": nullable(NUMBER), "gpu_mem_reserved_gb": nullable(NUMBER),
        "gpu_mem_peak_gb": nullable(NUMBER), "rss_gb": nullable(NUMBER), "skipped": BOOL, "captured": BOOL,
    },
    "eval": {
        "split": STR, "step": INT, "epoch": INT, "loss": nullable(NUMBER), "accuracy": nullable(NUMBER),
        "balanced_accuracy": nullable(NUMBER), "per_class_recall": (dict,), "confusion": (list,),
        "labels": (list,), "rows": INT, "eval_time_s": NUMBER,
    },
    "checkpoint": {"path": STR, "step": INT, "epoch": INT, "kind": STR},
    "run_end": {"status": STR, "elapsed_s": NUMBER, "error": nullable(STR), "log": nullable(STR)},
}

# Fields added within schema 1 (files written before lack them): checked only where present.
ADDED = {
    "run_start": {"process_start": NUMBER, "startup": {"*": NUMBER}},
    "resume": {"process_start": NUMBER, "startup": {"*": NUMBER}},
    "run_end": {"wall_s": NUMBER, "process_wall_s": NUMBER},
    "step": {"queued": BOOL},
}

# Fields whose values come from a fixed set.
CHOICES = {
    ("run_start", "device.type"): {"cuda", "cpu"},
    ("eval", "split"): {"validation", "test"},
    ("checkpoint", "kind"): {"epoch", "steps", "interrupt"},
    ("run_end", "status"): {"completed", "failed", "interrupted"},
}


def _type_ok(value, types: tuple) -> bool:
    if isinstance(value, bool) and bool not in types:  # JSON true is not a number
        return False
    return isinstance(value, types)


def _check(value, spec, where: str) -> list[str]:
    if isinstance(spec, tuple):
        if not _type_ok(value, spec):
            return [f"{where}: {value!r} is not {'/'.join(t.__name__ for t in spec)}"]
        return []
    if not isinstance(value, dict):
        return [f"{where}: {value!r} is not an object"]
    if "*" in spec:
        return [p for key, sub in value.items() for p in _check(sub, spec["*"], f"{where}.{key}")]
    out = []
    for name, sub in spec.items():
        if name not in value:
            out.append(f"{where}.{name}: missing")
        else:
            out += _check(value[name], sub, f"{where}.{name}")
    return out


def _get(record: dict, dotted: str):
    for part in dotted.split("."):
        record = record[part]
    return record


def problems(record: dict) -> list[str]:
    """What is wrong with one record (empty when it follows the schema)."""
    event = record.get("event")
    out = []
    for name, types in COMMON.items():
        if name not in record:
            out.append(f"{event}.{name}: missing")
        elif not _type_ok(record[name], types):
            out.append(f"{event}.{name}: {record[name]!r} is not {'/'.join(t.__name__ for t in types)}")
    if record.get("schema") != SCHEMA:
        out.append(f"{event}.schema: {record.get('schema')!r}, expected {SCHEMA}")
    if event not in EVENTS:
        return out  # readers ignore unknown events
    out += [p.replace("$", event, 1) for p in _check(record, EVENTS[event], "$")]
    present = {k: v for k, v in ADDED.get(event, {}).items() if k in record}
    out += [p.replace("$", event, 1) for p in _check(record, present, "$")]
    for (ev, dotted), allowed in CHOICES.items():
        if ev == event and not out:
            value = _get(record, dotted)
            if value not in allowed:
                out.append(f"{event}.{dotted}: {value!r} not one of {sorted(allowed)}")
    if event == "eval" and not out:
        if record["labels"] != LABELS:
            out.append(f"eval.labels: {record['labels']!r}, expected {LABELS}")
        if set(record["per_class_recall"]) != set(LABELS):
            out.append(f"eval.per_class_recall: keys {sorted(record['per_class_recall'])}")
        m = record["confusion"]
        if not (len(m) == 3 and all(len(r) == 3 and all(_type_ok(v, INT) for v in r) for r in m)):
            out.append(f"eval.confusion: {m!r} is not a 3x3 list of ints")
        elif sum(map(sum, m)) != record["rows"]:
            out.append(f"eval.confusion: sums to {sum(map(sum, m))}, rows is {record['rows']}")
    return out


def run_problems(records: list[dict]) -> list[str]:
    """The order of one completed, uninterrupted run: run_start first, run_end last, steps 1..N."""
    out = [f"line {i + 1}: {p}" for i, r in enumerate(records) for p in problems(r)]
    if not records or records[0]["event"] != "run_start":
        out.append("the first record is not run_start")
    if not records or records[-1]["event"] != "run_end":
        out.append("the last record is not run_end")
    if sum(r["event"] == "run_start" for r in records) != 1 or sum(r["event"] == "run_end" for r in records) != 1:
        out.append("run_start and run_end must each appear once")
    steps = [r["step"] for r in records if r["event"] == "step"]
    if steps != list(range(1, len(steps) + 1)):
        out.append(f"step numbers are not 1..{len(steps)} without gaps")
    times = [r["time"] for r in records]
    if times != sorted(times):
        out.append("times go backwards")
    return out
