"""A sweep spec: settings over the preset, then stages of grids searched one after another.

    preset: smollm2
    base: {validation_size: 2000}           # every variant, over the preset
    seeds: [1, 2]                           # each variant once per seed, scored by the mean (optional)
    stages:
      - name: lr-loss
        grid:
          learning_rate: [1e-4, 2e-4]       # a setting and its values
          loss: [label, answer]
      - name: lora
        grid:
          lora:                             # a named bundle: each option sets several settings
            r16: {lora_r: 16, lora_alpha: 32}
            r64: {lora_r: 64, lora_alpha: 128}
      - name: prompt
        grid:
          prompt_template:                  # named values: long strings get short labels
            short: "{premise} ? {hypothesis} :"

A stage's variants are the product of its grid, each on top of the settings chosen so far, and
the incumbent (the best so far) always competes: a stage can only keep or improve the validation
score. This is coordinate descent over groups of settings, which needs tens of runs where the full
product of a real search space would need thousands."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import typing
from dataclasses import dataclass
from pathlib import Path

from nli_qlora.config import PRESETS, RunConfig, read_config_file
from nli_qlora.infra.errors import UserError

SPEC_DIR = Path(__file__).with_name("sweeps")
FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
BOOLS = {name for name, tp in typing.get_type_hints(RunConfig).items() if tp is bool}
# settings a sweep decides itself: test rows are never read while choosing, and each variant has its own directory
OWNED = {"test_eval", "output_dir", "preset"}


@dataclass(frozen=True)
class Option:
    """One value of one grid key: its label (part of the variant's name) and the settings it sets."""
    label: str
    settings: dict


@dataclass(frozen=True)
class Stage:
    name: str
    grid: dict[str, tuple[Option, ...]]

    def combinations(self) -> list[tuple[Option, ...]]:
        return list(itertools.product(*self.grid.values()))


@dataclass(frozen=True)
class Spec:
    source: str
    preset: str | None
    base: dict
    stages: tuple[Stage, ...]
    seeds: tuple[int, ...] = ()


@dataclass
class Variant:
    """One run of the sweep: `settings` are the whole run config (test evaluation off)."""
    name: str
    stage: str
    choice: dict            # grid key -> option label
    overrides: dict         # what differs from the sweep's base settings
    settings: dict

    def key(self) -> str:
        """Identity of what would be trained: two variants with the same key are one run."""
        return json.dumps({k: v for k, v in self.settings.items() if k != "output_dir"}, sort_keys=True)


def find_spec(name_or_path: str) -> Path:
    """A spec file's path: an existing file, or the name of one shipped in nli_qlora/tools/sweeps."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SPEC_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in SPEC_DIR.glob("*.yaml")))
    raise UserError(f"--spec: no such file {name_or_path!r}, and no shipped spec of that name (shipped: {names})")


def load_spec(path: Path) -> Spec:
    source = str(path)
    data = read_config_file(path, "--spec")
    unknown = sorted(set(data) - {"description", "preset", "base", "seeds", "stages"})
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r} (a spec has description, preset, base, seeds, stages)")
    seeds = data.get("seeds") or []
    if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds) \
            or len(set(seeds)) != len(seeds):
        raise UserError(f"{source}: seeds must be a list of different integers, got {seeds!r}")
    base = _settings(data.get("base") or {}, f"{source}: base")
    stages = data.get("stages") or []
    if not isinstance(stages, list):
        raise UserError(f"{source}: stages must be a list")
    seen: set[str] = {"base", "final", "grid"}  # grid: the stage --grid adds
    parsed = []
    for i, stage in enumerate(stages, 1):
        where = f"{source}: stage {i}"
        if not isinstance(stage, dict) or set(stage) - {"name", "grid"} or not isinstance(stage.get("grid"), dict):
            raise UserError(f"{where}: needs a name and a grid (a mapping of setting names to values)")
        name = str(stage.get("name") or f"stage{i}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_+-]*", name) or name in seen:
            raise UserError(f"{where}: name {name!r} must be unique, letters, digits, _ + - (and not base, final or grid)")
        seen.add(name)
        if not stage["grid"]:
            raise UserError(f"{where}: the grid is empty")
        parsed.append(_stage(name, [(key, values) for key, values in stage["grid"].items()], f"{where} ({name})"))
    preset = data.get("preset")
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise UserError(f"{source}: preset {preset!r} is not a preset (presets: {', '.join(PRESETS)})")
    return Spec(source, preset, base, tuple(parsed), tuple(seeds))


def _stage(name: str, items: list[tuple], where: str) -> Stage:
    """A stage's grid; a setting named twice (learning-rate and learning_rate), or set by two of its
    keys (a bundle and a grid over the same setting), is refused: one value would silently win."""
    grid: dict[str, tuple[Option, ...]] = {}
    setter: dict[str, str] = {}
    for key, values in items:
        key = str(key).replace("-", "_")
        if key in grid:
            raise UserError(f"{where}: {key} is named twice; give its values once")
        grid[key] = grid_options(key, values, f"{where}: {key}")
        for setting in {k for option in grid[key] for k in option.settings}:
            if setting in setter:
                raise UserError(f"{where}: {key} and {setter[setting]} both set {setting}; one of them would "
                                f"silently win (put its values in one of them)")
            setter[setting] = key
    return Stage(name, grid)


def _settings(values, where: str) -> dict:
    """Settings named as RunConfig fields; one error naming the first wrong one."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of setting names to values")
    named = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in named:
            raise UserError(f"{where}: {name} is set twice")
        named[name] = value
    values = named
    for name in values:
        if name in OWNED:
            raise UserError(f"{where}: {name} is set by the sweep itself (test rows are read only by --final-seeds)")
        if name not in FIELDS:
            RunConfig.from_dict({name: None}, source=where)  # raises, with a did-you-mean
    return values


def grid_options(key: str, values, where: str) -> tuple[Option, ...]:
    """A list of values, a mapping label -> value, or (for a key that is not a setting) label -> settings."""
    key = str(key).replace("-", "_")
    if key in FIELDS:
        _settings({key: None}, where)
        if isinstance(values, list):
            pairs = [(_label(v), {key: v}) for v in values]
        elif isinstance(values, dict):
            pairs = [(str(label), {key: v}) for label, v in values.items()]
        else:
            raise UserError(f"{where}: expected a list of values or a mapping of labels to values")
    elif isinstance(values, dict):
        pairs = [(str(label), _settings(v, f"{where}: {label}")) for label, v in values.items()]
    else:  # not a setting, and not a bundle of them: most likely a misspelt setting
        RunConfig.from_dict({key: None}, source=where.rpartition(":")[0] or where)
        raise AssertionError("unreachable: from_dict refuses an unknown name")
    if not pairs:
        raise UserError(f"{where}: no values")
    labels = [label for label, _ in pairs]
    for label in labels:
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", label):
            raise UserError(f"{where}: label {label!r} may hold only letters, digits and _ . + - (name the values)")
    if len(set(labels)) != len(labels):
        raise UserError(f"{where}: two values have the same label")
    return tuple(Option(label, settings) for label, settings in pairs)


def _label(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def make_variant(name: str, stage: str, choice: dict, overrides: dict, base: dict, where: str,
                 test_eval: bool = False) -> Variant:
    """The variant's whole config, checked now: a bad value fails the sweep before any run starts.
    Test evaluation stays off except in the final runs (`test_eval`)."""
    cfg = RunConfig.from_dict({**base, **overrides, "test_eval": test_eval}, source=where)  # errors name `where`
    try:
        cfg.validate()
    except UserError as err:  # names the flag
        raise UserError(f"{where}: {err}") from None
    return Variant(name, stage, choice, overrides, cfg.to_dict())


@dataclass
class Invalid:
    """A combination that no run can take on top of these settings (found only mid-sweep: each value
    was valid on the base, the settings chosen so far make it impossible, e.g. a --grad-accum that
    does not divide the chosen --batch-size)."""
    name: str
    stage: str
    choice: dict
    overrides: dict
    error: str


def stage_variants(stage: Stage, incumbent: dict, base: dict, source: str,
                   skip_invalid: bool = False) -> list[Variant | Invalid]:
    """The stage's grid on top of the incumbent's overrides; with `skip_invalid`, a combination that
    the settings refuse is returned as Invalid instead of ending the sweep."""
    out, names = [], set()
    for options in stage.combinations():
        overrides = dict(incumbent)
        for option in options:
            overrides.update(option.settings)
        name = ".".join([stage.name, *(o.label for o in options)])
        if name in names:  # labels may hold dots: 0.1 then 5 and 0 then 1.5 are both "0.1.5"
            raise UserError(f"{source}: stage {stage.name}: two variants are both named {name}; name the values "
                            f"(a mapping of labels to values)")
        names.add(name)
        choice = dict(zip(stage.grid, (o.label for o in options)))
        try:
            out.append(make_variant(name, stage.name, choice, overrides, base, f"{source}: {name}"))
        except UserError as err:
            if not skip_invalid:
                raise
            out.append(Invalid(name, stage.name, choice, overrides, str(err)))
    return out


def grid_from_flags(items: list[str]) -> Stage | None:
    """`--grid SETTING=V1,V2` (repeated): one more stage, the product of the values."""
    if not items:
        return None
    pairs = []
    for item in items:
        key, eq, values = item.partition("=")
        if not eq or not key or not values:
            raise UserError(f"--grid: expected SETTING=V1,V2, got {item!r}")
        key = key.replace("-", "_")
        pairs.append((key, [_flag_value(key, v) for v in values.split(",")]))
    return _stage("grid", pairs, "--grid")


def _flag_value(key: str, text: str):
    """A value as typed on the command line: true/false for a yes-or-no setting; the rest are
    converted by RunConfig like a file's strings."""
    if key in BOOLS and text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    return text
