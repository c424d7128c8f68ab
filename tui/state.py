"""Fold the records of a metrics file (docs/metrics.md) into what the dashboard shows.

``RunState`` is mutable and owned by one thread (the reader); ``snapshot()`` hands the UI a
frozen ``RunSnapshot`` that is cheap to make (series are already downsampled) and safe to read
from another thread. Time-dependent answers (stalled? elapsed? ETA?) take ``now`` as an
argument so that tests and snapshots can fix the clock. A line that does not parse, or a record
whose fields have the wrong types, is counted as malformed and skipped: never fatal.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

try:  # optional: about three times faster on a long file; the standard library is the baseline
    from orjson import loads as parse_json
except ImportError:
    from json import loads as parse_json

from tui import fmt
from tui.series import ENVELOPE, MEAN, Series

LABELS = ("entailment", "neutral", "contradiction")
STEP_FIELDS = (
    "loss", "lr", "grad_norm", "samples_per_s", "tokens_per_s", "step_time_s",
    "gpu_mem_allocated_gb", "gpu_mem_reserved_gb", "gpu_mem_peak_gb", "rss_gb", "padding_fraction",
)
STEP_COUNTS = ("epoch", "epoch_step", "steps_per_epoch")
# a step that captured a CUDA graph took one-off extra time: left out of the throughput views
TIMING = tuple(i for i, name in enumerate(STEP_FIELDS) if name in ("samples_per_s", "tokens_per_s", "step_time_s"))
SERIES_NAMES = STEP_FIELDS + ("loss_ema", "time")  # time: the record's wall time, for a wall-clock x axis
ENVELOPED = ("loss", "grad_norm")  # drawn as their spread; the per-step rates and times as bucket means
RATE_WINDOW = 50  # recent steps that the step rate (and so the ETA) is measured over
MAX_NOTED = 5  # malformed lines / skipped steps quoted one by one in the event log; the rest are counted


NUMBER_TYPES = frozenset((float, int, type(None)))  # what a number field may be (not bool, not str)
STEP_COLUMNS = STEP_FIELDS + ("time", "elapsed_s")  # read from a batch of step records at once
MALFORMED = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)  # a line's faults


class Malformed(ValueError):
    """A record whose fields do not match the schema."""


def num(value) -> float | None:
    """A number field: float, or None for null; anything else is malformed."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Malformed(f"not a number: {value!r}")
    return float(value)


def integer(value) -> int | None:
    number = num(value)
    return None if number is None or not math.isfinite(number) else int(number)


def ema_beta(total_steps: int | None) -> float:
    """Smoothing that suits the run's length: a span of about 2% of the steps, 10 to 200."""
    span = max(10, min(200, (total_steps or 0) // 50))
    return 1.0 - 2.0 / (span + 1)


@dataclass(frozen=True)
class Eval:
    split: str
    epoch: int
    step: int
    loss: float | None
    accuracy: float | None
    balanced_accuracy: float | None
    per_class_recall: dict[str, float]
    confusion: tuple[tuple[int, ...], ...] | None
    labels: tuple[str, ...]
    rows: int | None


@dataclass(frozen=True)
class Event:
    """One line of the event log. ``level`` is info, good, warning or error."""

    text: str
    elapsed: float | None = None  # seconds into the run (summed over resumes)
    level: str = "info"
    time: float | None = None  # the record's wall time: orders the events of several runs


@dataclass(frozen=True)
class RunInfo:
    """What run_start says about the run; dicts as written (unknown fields kept)."""

    run_name: str
    run_dir: str
    model: dict
    device: dict
    data: dict
    planned: dict
    config: dict
    params: dict
    lora_targets: dict
    world_size: int | None
    started_at: float | None = None  # the run_start record's time: zero of the wall-clock axis


@dataclass(frozen=True)
class RunSnapshot:
    source: str
    generation: int = 0  # bumped each time the file started over (truncated/replaced)
    lines: int = 0  # complete lines read
    malformed: int = 0
    records: int = 0  # lines folded as metrics records
    exists: bool = False
    deleted: bool = False  # the file was read, and is gone now (the reader saw it go)
    caught_up: bool = False  # everything in the file when it was polled has been folded
    read_fraction: float = 0.0  # of the file's bytes, while catching up
    pending_bytes: int = 0  # a last line still waiting for its newline
    file_error: str | None = None
    info: RunInfo | None = None
    recorded_status: str = "waiting"  # waiting / running / completed / failed / interrupted
    error: str | None = None
    error_log: str | None = None
    step: int = 0
    epoch: int = 0
    epoch_step: int = 0
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    epochs: int | None = None
    skipped_steps: int = 0
    resumes: int = 0
    steps_per_s: float | None = None
    base_elapsed: float = 0.0  # elapsed_s summed over the processes before a resume
    last_elapsed: float | None = None  # elapsed_s of the last record of this process
    last_time: float | None = None  # `time` of the last record
    last_arrival: float | None = None  # when a line last arrived while we watched
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    last: dict[str, float | None] = field(default_factory=dict)  # exact last value of each series
    gpu_peak_gb: float | None = None  # the largest gpu_mem_peak_gb of any step (the series' view thins it)
    recent_samples_per_s: tuple = ()  # samples_per_s of the last RATE_WINDOW steps, every one
    evals: tuple[Eval, ...] = ()
    events: tuple[Event, ...] = ()

    @property
    def not_metrics(self) -> bool:
        """Lines came, and not one of them was a metrics record: /etc/passwd, a predictions file."""
        return self.malformed > 0 and self.records == 0


    @property
    def name(self) -> str:
        if self.info and self.info.run_name:
            return self.info.run_name
        return self.source

    def idle_for(self, now: float) -> float | None:
        """Seconds since the run last wrote a line: by its clock or by when the line arrived here,
        whichever is later, so a run whose clock lags ours (another machine) is not called idle."""
        marks = [t for t in (self.last_time, self.last_arrival) if t is not None]
        return max(0.0, now - max(marks)) if marks else None

    def status(self, now: float, stall_after: float) -> str:
        if self.not_metrics:
            return "not metrics"
        if self.deleted:
            return "deleted"
        if self.recorded_status == "running":
            idle = self.idle_for(now)
            if idle is not None and idle > stall_after:
                return "stalled"
        return self.recorded_status

    def elapsed(self, now: float, stall_after: float) -> float | None:
        """Run time so far: to the last line once ended or stalled, else up to now. Counted from the
        run's own elapsed_s, so it does not depend on the two machines' clocks agreeing."""
        if self.last_elapsed is None:
            return None
        recorded = self.base_elapsed + self.last_elapsed
        if self.status(now, stall_after) != "running":
            return recorded
        return recorded + (self.idle_for(now) or 0.0)

    def eta(self, now: float, stall_after: float) -> float | None:
        """Seconds left at the recent step rate (planned total_steps); None when unknown."""
        if self.status(now, stall_after) != "running" or not self.steps_per_s or not self.total_steps:
            return None
        remaining = (self.total_steps - self.step) / self.steps_per_s
        return max(remaining - (self.idle_for(now) or 0.0), 0.0)

    def best_validation(self) -> Eval | None:
        scored = [e for e in self.evals if e.split == "validation" and e.balanced_accuracy is not None]
        return max(scored, key=lambda e: e.balanced_accuracy, default=None)


class RunState:
    """The fold of one metrics file. Feed it lines; ask it for snapshots."""

    def __init__(self, source: str = "", max_points: int = 2000):
        self.source = source
        self.max_points = max_points
        self.generation = 0
        self.exists = False
        self.deleted = False
        self.caught_up = False
        self.read_fraction = 0.0
        self.pending_bytes = 0
        self.file_error: str | None = None
        self.last_arrival: float | None = None
        self._event_time: float | None = None  # of the record being folded
        self._handlers = {"run_start": self._on_run_start, "resume": self._on_resume, "warning": self._on_warning,
                          "step": self._on_step, "eval": self._on_eval, "checkpoint": self._on_checkpoint,
                          "run_end": self._on_run_end}
        # step records read but not yet folded (see _fold_steps; empty between feed() calls)
        self._steps: list[dict] = []
        self._step_numbers: list[int] = []  # their line numbers
        self._step_texts: list[str] = []  # and lines, for the note if one is malformed
        self._clear_lines()
        self._clear_run()

    # --- lifecycle ---------------------------------------------------------------------------
    def reset(self) -> None:
        """The file started over: forget everything read from it."""
        self.generation += 1
        self.last_arrival = None
        self._clear_lines()
        self._clear_run()

    def _clear_lines(self) -> None:
        self.lines = 0
        self.malformed = 0
        self.records = 0

    def _clear_run(self) -> None:
        self.info: RunInfo | None = None
        self.status = "waiting"
        self.error: str | None = None
        self.error_log: str | None = None
        self.series = {name: Series(self.max_points, ENVELOPE if name in ENVELOPED else MEAN)
                       for name in SERIES_NAMES}
        self._step_series = [self.series[name] for name in SERIES_NAMES]  # the columns of a step row
        self._rows: list[list] = []  # step rows folded but not yet in the series (see _flush)
        self._last_step: dict = {}  # the newest step record: its counters are read in _flush
        self.evals: list[Eval] = []
        self.events: list[Event] = []
        self.step = self.epoch = self.epoch_step = 0
        self.steps_per_epoch: int | None = None
        self.total_steps: int | None = None
        self.epochs: int | None = None
        self.skipped_steps = 0
        self.resumes = 0
        self.base_elapsed = 0.0
        self.last_elapsed: float | None = None
        self.last_time: float | None = None
        self._rate: deque[tuple[float, int]] = deque(maxlen=RATE_WINDOW)
        self._ema = 0.0
        self._ema_weight = 0.0  # 1 - beta**n: divides the bias toward 0 out of the first values
        self._beta = ema_beta(None)

    # --- reading -----------------------------------------------------------------------------
    def feed(self, lines: Iterable[str], arrived: float | None = None) -> None:
        """Fold complete lines. ``arrived``: the wall time they came in, when watching live."""
        got = False
        steps, numbers, texts = self._steps, self._step_numbers, self._step_texts
        for line in lines:
            self.lines += 1
            if not line or line.isspace():  # not strip(): that copies every line
                continue
            got = True
            try:
                record = parse_json(line)
                if type(record) is dict and record.get("event") == "step":
                    steps.append(record)  # most lines of a long file: folded a batch at a time
                    numbers.append(self.lines)
                    texts.append(line)
                    continue
                self._fold_steps()  # first the steps before it, so events stay in file order
                if not isinstance(record, dict) or not isinstance(record.get("event"), str):
                    raise Malformed("not a metrics record")
                self.fold(record)
                self.records += 1
            except MALFORMED as err:
                self._fold_steps()
                self._count_malformed(line, err)
        self._fold_steps()
        self._flush()
        if got and arrived is not None:
            self.last_arrival = arrived

    def _fold_steps(self) -> None:
        """Fold the pending step records: a column at a time when every field has its plain type
        (the usual case: checked in C), else one record at a time, as the schema's rules say."""
        if not self._steps:
            return
        pending = self._steps, self._step_numbers, self._step_texts
        records, numbers, texts = (list(p) for p in pending)  # copied: feed() holds these lists
        for p in pending:
            p.clear()
        if self._fold_step_columns(records):
            return
        for record, number, text in zip(records, numbers, texts):
            try:
                self._on_step(record)
                self.records += 1
            except MALFORMED as err:
                self._count_malformed(text, err, number)

    def _fold_step_columns(self, records: list[dict]) -> bool:
        """The step records as columns, when nothing in them needs a closer look (a field of
        another type, a skipped step); False, with nothing changed, otherwise."""
        self._flush()  # rows of earlier steps first: the series stay in step order
        try:
            steps = [r["step"] for r in records]
        except KeyError:
            return False
        if set(map(type, steps)) != {int}:
            return False
        columns = [[r.get(name) for r in records] for name in STEP_COLUMNS]
        if not all(set(map(type, column)) <= NUMBER_TYPES for column in columns):
            return False
        skipped = [r.get("skipped") for r in records]
        if True in skipped:  # noted one by one, in order: the per-record path
            return False
        captured = [r.get("captured") for r in records]
        if True in captured:
            for i, flag in enumerate(captured):
                if flag is True:
                    for j in TIMING:
                        columns[j][i] = None
        *values, times, elapsed = columns
        values.append(self._smoothed(values[0]))
        values.append(times)
        self._extend(steps, values, times, records[-1])
        self._last_step = records[-1]
        self.step = steps[-1]
        self.records += len(records)
        last_time = next((t for t in reversed(times) if t is not None), None)
        if last_time is not None:
            self.last_time = float(last_time)
        last_elapsed = next((e for e in reversed(elapsed) if e is not None), None)
        if last_elapsed is not None:
            self.last_elapsed = float(last_elapsed)
        return True

    def _smoothed(self, losses: list) -> list:
        """The debiased EMA after each loss (None where the loss is not a finite number)."""
        beta, ema, weight = self._beta, self._ema, self._ema_weight
        out = []
        for loss in losses:
            if loss is not None and loss - loss == 0.0:
                ema = beta * ema + (1 - beta) * loss
                weight = beta * weight + (1 - beta)
                out.append(ema / weight)
            else:
                out.append(None)
        self._ema, self._ema_weight = ema, weight
        return out

    def _flush(self) -> None:
        """Move the step rows of the per-record path into the series, a column at a time."""
        rows, self._rows = self._rows, []
        if not rows:
            return
        columns = list(zip(*rows))  # transposed in C
        self._extend(columns[0], columns[1:], columns[-1], self._last_step)

    def _extend(self, steps, values, times, last: dict) -> None:
        """Add step columns to the series; the step rate and counters from the newest steps."""
        for series, column in zip(self._step_series, values):
            series.extend(steps, column)
        for time, step in zip(times[-RATE_WINDOW:], steps[-RATE_WINDOW:]):  # the rate needs only the recent
            if time is not None:
                self._rate.append((time, step))
        try:  # where the run is: the last step's counters (a bad one leaves the previous)
            epoch, epoch_step, steps_per_epoch = [integer(last.get(name)) for name in STEP_COUNTS]
        except Malformed:
            return
        if epoch is not None:
            self.epoch = epoch
        if epoch_step is not None:
            self.epoch_step = epoch_step
        self.steps_per_epoch = steps_per_epoch or self.steps_per_epoch

    def _count_malformed(self, line: str, err: Exception, number: int | None = None) -> None:
        self.malformed += 1
        if self.malformed <= MAX_NOTED:
            snippet = line.strip()
            snippet = snippet if len(snippet) <= 40 else snippet[:39] + "…"
            why = type(err).__name__ if not isinstance(err, Malformed) else str(err)
            self._note(f"line {number or self.lines}: malformed, skipped ({why}): {snippet}", "warning")
        elif self.malformed == MAX_NOTED + 1:
            self._note("more malformed lines: counted, not quoted", "warning")

    def fold(self, record: dict) -> None:
        """Apply one record; unknown events are ignored (the schema lets new ones appear)."""
        event = record["event"]
        handler = self._handlers.get(event)
        if handler is None:
            return
        time, elapsed = record.get("time"), record.get("elapsed_s")
        time = None if time is None else float(time)
        elapsed = None if elapsed is None else float(elapsed)
        self._event_time = time if time is not None else self.last_time
        handler(record)
        if time is not None:
            self.last_time = time
        # run_end's elapsed_s is the process's; a resume's "restored" checkpoint record, written before
        # its `resume` line, carries the new process's 0.0 and would erase the time before the stop
        if elapsed is not None and event != "run_end" and not (event == "checkpoint" and record.get("kind") == "restored"):
            self.last_elapsed = elapsed

    def _now_elapsed(self) -> float | None:
        return None if self.last_elapsed is None else self.base_elapsed + self.last_elapsed

    def _note(self, text: str, level: str = "info", elapsed: float | None = None) -> None:
        self.events.append(Event(text, self._now_elapsed() if elapsed is None else elapsed, level, self._event_time))

    def _start_segment(self, record: dict) -> None:
        self.last_elapsed = num(record.get("elapsed_s")) or 0.0
        self._rate.clear()
        self.status = "running"

    # --- one handler per event (docs/metrics.md) ---------------------------------------------
    def _on_run_start(self, r: dict) -> None:
        planned = r.get("planned") or {}
        info = RunInfo(
            run_name=str(r.get("run_name") or ""), run_dir=str(r.get("run_dir") or ""),
            model=dict(r.get("model") or {}), device=dict(r.get("device") or {}), data=dict(r.get("data") or {}),
            planned=dict(planned), config=dict(r.get("config") or {}), params=dict(r.get("params") or {}),
            lora_targets=dict(r.get("lora_targets") or {}), world_size=integer(r.get("world_size")),
            started_at=num(r.get("time")),
        )
        if self.info is not None:  # a second run in the same file: show the new one alone
            self._clear_run()
        self.info = info
        self.total_steps = integer(planned.get("total_steps"))
        self.epochs = integer(planned.get("epochs"))
        self.steps_per_epoch = integer(planned.get("steps_per_epoch"))
        self._beta = ema_beta(self.total_steps)
        self._start_segment(r)
        plan = (f"{self.total_steps:,} steps ({self.epochs} epoch{'' if self.epochs == 1 else 's'} × {self.steps_per_epoch})"
                if self.total_steps else "no plan recorded")
        self._note(f"run started · {plan}", elapsed=0.0)

    def _on_resume(self, r: dict) -> None:
        step = integer(r.get("step")) or 0
        epoch = integer(r.get("epoch"))
        self.base_elapsed += self.last_elapsed or 0.0
        self._start_segment(r)
        self.resumes += 1
        self._flush()
        for series in self.series.values():
            series.truncate_after(step)
        self.evals = [e for e in self.evals if e.step <= step]
        self.step = step
        self._note(f"resumed at step {step} (epoch {epoch}) from {r.get('checkpoint')}", "warning",
                   self.base_elapsed)

    def _on_warning(self, r: dict) -> None:
        kind = r.get("kind")
        self._note(f"warning{f' ({kind})' if kind else ''}: {r.get('message')}", "warning")

    def _on_step(self, r: dict) -> None:
        # The hot path: a long run is mostly step lines. A field that is not a number raises
        # before anything changes, and feed() counts the line as malformed. The step
        # counters and the rate are read once per batch, in _flush.
        step = int(r["step"])
        get = r.get
        values = list(map(get, STEP_FIELDS))
        if not all(map(NUMBER_TYPES.__contains__, map(type, values))):  # checked in C: no float() a value
            raise Malformed("a step field is not a number")
        time, elapsed = get("time"), get("elapsed_s")
        time = None if time is None else float(time)
        elapsed = None if elapsed is None else float(elapsed)
        if get("captured") is True:
            for i in TIMING:
                values[i] = None
        # everything parsed: now change state
        loss = values[0]
        smoothed = None
        if loss is not None and loss - loss == 0.0:
            # debiased like Adam's moments, so the first steps are not pulled toward zero
            self._ema = self._beta * self._ema + (1 - self._beta) * loss
            self._ema_weight = self._beta * self._ema_weight + (1 - self._beta)
            smoothed = self._ema / self._ema_weight
        values.insert(0, step)
        values.append(smoothed)
        values.append(time)
        self._rows.append(values)
        self._last_step = r
        self.step = step
        if get("skipped") is True:
            self._event_time = time if time is not None else self.last_time
            self.skipped_steps += 1
            if self.skipped_steps <= MAX_NOTED:
                self._note(f"step {step}: non-finite loss, update skipped", "warning")
        if time is not None:
            self.last_time = time
        if elapsed is not None:
            self.last_elapsed = elapsed

    def _on_eval(self, r: dict) -> None:
        labels = tuple(r.get("labels") or LABELS)
        confusion = r.get("confusion")
        if confusion is not None:
            confusion = tuple(tuple(int(c) for c in row) for row in confusion)
            if len(confusion) != len(labels) or any(len(row) != len(labels) for row in confusion):
                raise Malformed("confusion is not labels × labels")
        recall = {str(k): num(v) for k, v in (r.get("per_class_recall") or {}).items()}
        self.evals.append(Eval(
            split=str(r.get("split")), epoch=integer(r.get("epoch")) or 0, step=integer(r.get("step")) or 0,
            loss=num(r.get("loss")), accuracy=num(r.get("accuracy")),
            balanced_accuracy=num(r.get("balanced_accuracy")), per_class_recall=recall,
            confusion=confusion, labels=labels, rows=integer(r.get("rows")),
        ))

    def _on_checkpoint(self, r: dict) -> None:
        path = str(r.get("path"))
        run_dir = self.info.run_dir.rstrip("/") + "/" if self.info and self.info.run_dir else None
        if run_dir and path.startswith(run_dir):
            path = path[len(run_dir):]  # the run directory is in the header already
        kind = r.get("kind")
        self._note(f"saved {path} (step {r.get('step')}{'' if kind == 'epoch' else f', {kind}'})", "good")

    def _on_run_end(self, r: dict) -> None:
        status = str(r.get("status") or "completed")
        elapsed = num(r.get("elapsed_s"))
        if elapsed is not None:
            self.last_elapsed = elapsed
        self.status = status
        self.error = r.get("error")
        self.error_log = r.get("log")
        took = fmt.duration(self._now_elapsed())
        if status == "completed":
            self._note(f"run completed in {took}", "good")
        else:
            self._note(f"run {status} after {took}" + (f": {self.error}" if self.error else ""),
                       "error" if status == "failed" else "warning")
        if self.error_log:
            self._note(f"traceback: {self.error_log}", "error" if status == "failed" else "warning")

    # --- output ------------------------------------------------------------------------------
    def steps_per_s(self) -> float | None:
        if len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def snapshot(self, series: bool = True) -> RunSnapshot:
        """The run as of now. ``series=False``: without the plotted series (their last values
        stay), for progress reports while a long file is first read and nothing is plotted."""
        self._fold_steps()
        self._flush()
        return RunSnapshot(
            source=self.source, generation=self.generation, lines=self.lines, malformed=self.malformed,
            records=self.records,
            exists=self.exists, deleted=self.deleted, caught_up=self.caught_up, read_fraction=self.read_fraction,
            pending_bytes=self.pending_bytes,
            file_error=self.file_error, info=self.info, recorded_status=self.status, error=self.error,
            error_log=self.error_log, step=self.step, epoch=self.epoch, epoch_step=self.epoch_step,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, epochs=self.epochs,
            skipped_steps=self.skipped_steps,
            resumes=self.resumes, steps_per_s=self.steps_per_s(), base_elapsed=self.base_elapsed,
            last_elapsed=self.last_elapsed, last_time=self.last_time,
            last_arrival=self.last_arrival,
            series={name: s.view() for name, s in self.series.items()} if series else {},
            last=self._last_values(),
            gpu_peak_gb=self.series["gpu_mem_peak_gb"].top(),
            recent_samples_per_s=tuple(self.series["samples_per_s"].tail(RATE_WINDOW)),
            evals=tuple(self.evals), events=tuple(self.events),
        )

    def _last_values(self) -> dict[str, float | None]:
        """Each series' last value; loss and grad norm are the newest step's own, so a skipped step's
        null shows as none, never as the loss of a step before it beside the newest step number."""
        last = {name: s.last for name, s in self.series.items()}
        newest = self._last_step or {}
        for name in ("loss", "grad_norm"):
            value = newest.get(name)
            if name in last and name in newest and not (isinstance(value, (int, float)) and value - value == 0.0):
                last[name] = None
        return last
