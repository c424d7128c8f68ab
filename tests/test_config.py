"""The one run configuration: presets, the CLI generated from it, settings files, config.json."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest

from nli_qlora.config import PRESETS, OneLineParser, RunConfig, add_config_flags, preset, resolve
from nli_qlora.model.families import PHI_TARGETS, PUBLISHED_TARGETS
from nli_qlora.infra.errors import UserError
from nli_qlora.cli.train import build_parser, main
from nli_qlora.run.rundir import run_dir_for

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]


def flags_of(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def resolved(*argv: str) -> RunConfig:
    return resolve(build_parser().parse_args(list(argv)))


# --- the CLI is generated from the dataclass --------------------------------------------------------

def test_every_field_but_preset_has_a_flag_and_nothing_else_does():
    parser = OneLineParser(prog="t")
    add_config_flags(parser)
    expected = {"--" + name.replace("_", "-") for name in FIELDS if name != "preset"}
    booleans = {"--no-" + f.name.replace("_", "-") for f in dataclasses.fields(RunConfig) if f.type in ("bool", bool)}
    assert flags_of(parser) - {"-h", "--help"} == expected | booleans
    assert "--preset" not in flags_of(parser)  # train.py adds its own --preset, a choice of PRESETS


def test_every_flag_has_the_fields_help():
    parser = OneLineParser(prog="t")
    add_config_flags(parser)
    helps = {a.dest: a.help for a in parser._actions}
    for f in dataclasses.fields(RunConfig):
        if f.name != "preset":
            assert helps[f.name] == f.metadata["help"] and helps[f.name]


def test_no_flags_give_the_seed_preset_named_seed():
    cfg = resolved()
    assert cfg == preset("seed")
    assert cfg.preset == "seed" and run_dir_for(cfg).name.startswith("seed-")  # not runs/None-<time>


def test_flags_are_typed_like_their_fields():
    cfg = resolved("--lora-r", "16", "--learning-rate", "1e-4", "--no-bucketing", "--target-modules", "q_proj",
                   "v_proj", "--label-words", " yes", " maybe", " no", "--revision", "main", "--loss", "answer")
    assert (cfg.lora_r, cfg.learning_rate, cfg.bucketing) == (16, 1e-4, False)
    assert cfg.target_modules == ("q_proj", "v_proj") and cfg.label_words == (" yes", " maybe", " no")
    assert (cfg.revision, cfg.loss) == ("main", "answer")


def test_target_modules_phi_means_the_phi_names():
    assert resolved("--target-modules", "phi").target_modules == PHI_TARGETS


# --- settings files -------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_settings_file_overrides_the_preset_and_flags_override_the_file(tmp_path, suffix):
    settings = {"lora_r": 4, "lora-alpha": 8, "epochs": 2, "target_modules": ["q_proj"], "loss": "answer"}
    path = tmp_path / f"run{suffix}"
    if suffix == ".yaml":
        path.write_text("lora_r: 4\nlora-alpha: 8\nepochs: 2\ntarget_modules: [q_proj]\nloss: answer\n"
                        "learning_rate: 1e-4  # YAML 1.1 reads this as a string\n")
    else:
        path.write_text(json.dumps({**settings, "learning_rate": 1e-4}))
    cfg = resolved("--preset", "tiny", "--config", str(path), "--epochs", "7")
    tiny = preset("tiny")
    assert cfg.epochs == 7  # flag over file
    assert (cfg.lora_r, cfg.lora_alpha, cfg.target_modules, cfg.loss) == (4, 8, ("q_proj",), "answer")  # file
    assert cfg.learning_rate == 1e-4 and isinstance(cfg.learning_rate, float)
    assert (cfg.model, cfg.batch_size, cfg.preset) == (tiny.model, tiny.batch_size, "tiny")  # preset underneath


def test_an_unknown_key_in_a_settings_file_is_one_user_error_naming_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lora_r: 4\nlora_rank: 8\n")
    with pytest.raises(UserError, match=rf"^{path}: unknown setting 'lora_rank' \(did you mean 'lora_r'\?\)$"):
        resolved("--config", str(path))


@pytest.mark.parametrize("text,message", [
    ("lora_r: lots\n", "lora_r: expected an integer, got 'lots'"),
    ("learning_rate: fast\n", "learning_rate: expected a number, got 'fast'"),
    ("bucketing: maybe\n", "bucketing: expected true or false, got 'maybe'"),
    ("target_modules: {q: 1}\n", "target_modules: expected a list of strings, got {'q': 1}"),
    ("epochs: 2.5\n", "epochs: expected an integer, got 2.5"),
    ("model: null\n", "model: expected str, got None"),
])
def test_a_value_of_the_wrong_type_in_a_settings_file_is_one_user_error_naming_it(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        resolved("--config", str(path))
    assert str(err.value) == f"{path}: {message}"


def test_a_numeric_revision_in_yaml_stays_a_string(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("revision: 1234567\n")
    assert resolved("--config", str(path)).revision == "1234567"


def test_a_bad_choice_in_a_settings_file_is_caught_like_the_flag(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optimizer: sgd\n")
    with pytest.raises(UserError, match=r"^--optimizer: must be one of paged_adamw_8bit, adamw_8bit, adamw; "
                                        r"got 'sgd'$"):
        resolved("--config", str(path))


@pytest.mark.parametrize("text,message", [(None, "--config: no such file"), ("a: [1,\n", "--config: cannot parse"),
                                          ("- 1\n- 2\n", "must hold a mapping"),
                                          ("learning-rate: 1e-3\nlearning_rate: 2e-3\n", "sets learning_rate twice")])
def test_an_unreadable_settings_file_is_one_user_error(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError, match=message):
        resolved("--config", str(path))


# --- bad values: one line naming the flag, exit status 2 -----------------------------------------------

@pytest.mark.parametrize("argv,flag", [
    (["--lora-dropout", "1.5"], "--lora-dropout: must be in [0, 1), got 1.5"),
    (["--batch-size", "8", "--grad-accum", "3"], "--grad-accum: 3 does not divide --batch-size 8"),
    (["--label-words", " yes", " no"], "--label-words: needs exactly three words, got 2"),
    (["--label-words", " a", " a", " b"], "--label-words: must be three different words"),
    (["--prompt-template", "no fields"], "--prompt-template: must contain {premise}"),
    (["--learning-rate", "0"], "--learning-rate: must be positive, got 0.0"),
    (["--epochs", "0"], "--epochs: must be at least 1, got 0"),
    (["--pad-to-multiple", "0"], "--pad-to-multiple: must be at least 1, got 0"),
    (["--train-size", "-1"], "--train-size: must be 0 or more, got -1"),
    (["--max-grad-norm", "-1"], "--max-grad-norm: must be 0 or more, got -1.0"),
])
def test_a_bad_value_is_one_line_naming_the_flag_and_exit_status_2(tmp_path, capsys, argv, flag):
    assert main(argv + ["--output-dir", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"python -m nli_qlora.train: error: {flag}" + err.split(flag, 1)[1]
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,words", [(["--lora-r", "many"], "argument --lora-r/: invalid int value: 'many'"),
                                        (["--loss", "focal"], "argument --loss: invalid choice: 'focal'"),
                                        (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
                                        (["--no-such-flag"], "unrecognized arguments: --no-such-flag")])
def test_a_flag_argparse_rejects_is_one_line_and_exit_status_2(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m nli_qlora.train: error: ")
    for part in words.split("/"):
        assert part in err


def test_a_bad_flag_from_the_command_line_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--lora-dropout", "2",
                           "--output-dir", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "python -m nli_qlora.train: error: --lora-dropout: must be in [0, 1), got 2.0\n"


# --- presets and persistence ------------------------------------------------------------------------------

def test_the_seed_preset_is_the_published_recipe():
    cfg = preset("seed")
    assert cfg.model == "microsoft/phi-2" and cfg.dataset == "stanfordnlp/snli"
    assert (cfg.train_size, cfg.validation_size, cfg.test_size) == (1000, 100, 100)
    assert (cfg.batch_size, cfg.grad_accum, cfg.learning_rate, cfg.epochs) == (8, 1, 2.5e-5, 5)
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_bias) == (32, 64, 0.05, "none")
    assert cfg.target_modules == PUBLISHED_TARGETS == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                       "up_proj", "down_proj", "lm_head")
    assert (cfg.quantization, cfg.double_quant) == ("nf4", True)
    assert cfg.optimizer == "paged_adamw_8bit" and cfg.lr_schedule == "constant"
    assert cfg.validate() is cfg


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_valid_and_round_trips_through_config_json(tmp_path, name):
    cfg = preset(name).validate()
    assert cfg.preset == name
    cfg.save(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert set(data) == set(FIELDS)
    again = RunConfig.load(tmp_path / "config.json")
    assert again == cfg
    assert isinstance(again.target_modules, tuple) and isinstance(again.label_words, tuple)


def test_an_unknown_preset_is_one_user_error():
    with pytest.raises(UserError, match=r"^--preset: unknown preset 'huge' \(choose from seed, tiny"):
        preset("huge")


def test_list_defaults_are_refused_so_presets_cannot_share_mutable_state():
    from nli_qlora.config import _f
    with pytest.raises(TypeError):
        _f(["q_proj"], "help")


def test_a_runs_config_json_as_settings_file_reproduces_that_run(tmp_path):
    """Its `preset` picks the base, so values the file leaves out come from the same preset."""
    original = RunConfig(**{**preset("tiny").to_dict(), "lora_r": 4, "output_dir": str(tmp_path / "old")})
    original.save(tmp_path / "config.json")
    again = resolved("--config", str(tmp_path / "config.json"), "--output-dir", str(tmp_path / "new"))
    assert again == RunConfig(**{**original.to_dict(), "output_dir": str(tmp_path / "new")})
    partial = tmp_path / "partial.yaml"
    partial.write_text("preset: tiny\nlora_r: 2\n")
    cfg = resolved("--config", str(partial))
    assert cfg == RunConfig(**{**preset("tiny").to_dict(), "lora_r": 2})
    assert resolved("--preset", "seed", "--config", str(partial)).model == preset("seed").model  # the flag wins


def test_a_saved_run_made_before_a_setting_existed_loads_with_what_it_ran(tmp_path):
    """--attention-kernel came after runs were made with torch's pick (cuDNN's kernel on Hopper): their
    config.json lacks it. A resume and the scorer read such a run as it ran; a settings file of the
    user's without it takes today's default."""
    from nli_qlora.run.checkpoint import config_of
    data = RunConfig().to_dict()
    del data["attention_kernel"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert RunConfig.load_saved(tmp_path / "config.json", flag="--resume").attention_kernel == "auto"
    assert config_of(tmp_path).attention_kernel == "auto"
    assert RunConfig.load(tmp_path / "config.json").attention_kernel == "flash"
    (tmp_path / "config.json").write_text(json.dumps({**data, "attention_kernel": "flash"}))
    assert RunConfig.load_saved(tmp_path / "config.json", flag="--resume").attention_kernel == "flash"
