"""The tuner measures candidates with the real step and writes a config the train CLI accepts."""

import dataclasses

import pytest

from nli_qlora.cli import tune as tune_cli
from nli_qlora.tools import tune
from nli_qlora.config import RunConfig, preset, read_config_file, resolve
from nli_qlora.cli.train import build_parser as train_parser

FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
TINY = ["--preset", "tiny", "--train-size", "48", "--steps", "1", "--warmup", "0"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "tuned.yaml"
    code = tune_cli.main(TINY + ["--batch-sizes", "2", "4", "--out", str(out)])
    return code, out


def test_tuner_writes_a_config_of_run_settings_chosen_among_the_candidates(tuned):
    code, out = tuned
    assert code == 0
    values = read_config_file(out)
    assert set(values) <= FIELDS
    assert values["batch_size"] in (2, 4)
    assert values["grad_accum"] == 1
    assert values["gradient_checkpointing"] in (True, False)
    assert values["bucketing"] in (True, False)
    RunConfig.from_dict({**preset("tiny").to_dict(), **values}, source=str(out)).validate()


def test_train_cli_resolves_the_tuned_config_over_the_tiny_preset(tuned):
    _, out = tuned
    values = read_config_file(out)
    cfg = resolve(train_parser().parse_args(["--config", str(out), "--preset", "tiny"]))
    assert (cfg.batch_size, cfg.grad_accum, cfg.gradient_checkpointing, cfg.bucketing) == (
        values["batch_size"], values["grad_accum"], values["gradient_checkpointing"], values["bucketing"])


def test_measured_table_lies_beside_the_config_with_every_candidate(tuned):
    _, out = tuned
    table = out.with_suffix(".md").read_text()
    assert "fastest" in table
    assert "not enforced" in table  # a CPU run says the budget was not enforced
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 2 * 2 * 2 * 2  # batch sizes x checkpointing x bucketing x base
    assert all(" ok " in row for row in rows)
    # the 4-bit base's lines first, then the same candidates on the dequantized base
    assert [" dequantized " in row for row in rows] == [False] * 8 + [True] * 8


def test_the_chosen_base_is_written_and_a_given_base_is_the_only_one_tried(tuned, tmp_path):
    _, out = tuned
    assert read_config_file(out)["dequantize_base"] in (True, False)
    only = tmp_path / "only.yaml"
    assert tune_cli.main(TINY + ["--batch-sizes", "2", "--no-gradient-checkpointing", "--dequantize-base",
                                 "--out", str(only)]) == 0
    rows = [line for line in only.with_suffix(".md").read_text().splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 2 * 2 and all(" dequantized " in row for row in rows)
    assert read_config_file(only)["dequantize_base"] is True


def test_a_model_without_a_4bit_base_has_no_base_dimension():
    cands = tune.candidates(dataclasses.replace(preset("tiny"), quantization="none"), [2], False)
    assert len(cands) == 4 and not any(c.dequantize_base for c in cands)


def test_keep_effective_batch_keeps_batch_size_and_picks_a_dividing_grad_accum(tmp_path):
    out = tmp_path / "keep.yaml"
    assert tune_cli.main(TINY + ["--batch-size", "2", "--keep-effective-batch", "--out", str(out)]) == 0
    values = read_config_file(out)
    assert values["batch_size"] == 2
    assert values["grad_accum"] in (1, 2)


def test_candidates_for_a_kept_batch_divide_it_and_grow_the_micro_batch():
    cands = tune.candidates(dataclasses.replace(preset("seed"), batch_size=8), [16, 32], keep_effective_batch=True)
    assert {c.batch_size for c in cands} == {8}
    for base in (False, True):
        line = [c.micro_batch for c in cands if not c.gradient_checkpointing and c.bucketing
                and c.dequantize_base is base]
        assert line == [1, 2, 4, 8]


def test_fastest_ignores_candidates_that_do_not_fit():
    c = [tune.Candidate(b, 1, False, True) for b in (8, 16, 32)]
    results = [tune.Result(c[0], "ok", samples_per_s=10.0), tune.Result(c[1], "ok", samples_per_s=20.0),
               tune.Result(c[2], "does not fit")]
    assert tune.fastest(results).candidate.batch_size == 16
    assert tune.fastest([results[2]]) is None


def test_the_tuner_takes_a_card_name_as_its_memory_budget_as_the_dry_run_does(capsys, tmp_path):
    """One budget reader for every command: `--memory-budget A40` is 48 GB for the tuner too."""
    out = tmp_path / "tuned.yaml"
    assert tune_cli.main(TINY + ["--batch-sizes", "2", "--memory-budget", "A40", "--out", str(out)]) == 0
    assert out.is_file()


def test_unreadable_memory_budget_is_one_line_exit_2(capsys):
    assert tune_cli.main(["--preset", "tiny", "--memory-budget", "lots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--memory-budget" in err and "lots" in err


def test_out_must_be_yaml(capsys, tmp_path):
    assert tune_cli.main(["--preset", "tiny", "--out", str(tmp_path / "tuned.txt")]) == 2
    assert "--out" in capsys.readouterr().err


def test_budget_is_not_enforced_on_cpu():
    import torch
    assert "not enforced" in tune.enforce_budget(48 * 10**9, torch.device("cpu"))



def test_the_written_config_trains_exactly_what_was_measured_without_any_preset_flag(tuned):
    """`train --config tuned.yaml` alone: every setting the tuner ran with, the chosen batch settings
    over them (a file of batch settings alone fell back to the seed preset for the rest, exit 0)."""
    _, out = tuned
    values = read_config_file(out)
    cfg = resolve(train_parser().parse_args(["--config", str(out)]))
    measured = dataclasses.replace(preset("tiny"), train_size=48)
    chosen = {k: values[k] for k in ("batch_size", "grad_accum", "gradient_checkpointing", "bucketing",
                                     "dequantize_base")}
    want = {k: v for k, v in dataclasses.replace(measured, **chosen).to_dict().items() if k != "output_dir"}
    assert {k: v for k, v in cfg.to_dict().items() if k != "output_dir"} == want


def test_on_cpu_a_candidate_over_the_budget_by_the_estimate_is_never_the_one_written(tmp_path, capsys):
    """No allocator enforces the budget here: the estimate decides, and the dry run agrees."""
    from nli_qlora.cli.train import main as train_main

    out = tmp_path / "tuned.yaml"  # batch 1024 with checkpointing: about 0.92 GB by the estimate, the fastest here
    assert tune_cli.main(TINY + ["--batch-sizes", "2", "1024", "--memory-budget", "0.85GB", "--out", str(out)]) == 0
    assert "| 1024 | 1 | 1024 | on | on | 4-bit | does not fit (estimated 0.9" in out.with_suffix(".md").read_text()
    assert read_config_file(out)["batch_size"] == 2
    capsys.readouterr()
    assert train_main(["--config", str(out), "--dry-run", "--quiet", "--memory-budget", "0.85GB"]) == 0, \
        capsys.readouterr().err


@pytest.mark.parametrize("where", ["no-folder/tuned.yaml", "adir.yaml"])
def test_an_out_that_cannot_be_written_is_one_line_before_measuring(tmp_path, capsys, where):
    (tmp_path / "adir.yaml").mkdir()
    assert tune_cli.main(TINY + ["--batch-sizes", "2", "--out", str(tmp_path / where)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{tune_cli.PROG}: error: --out: {tmp_path / where} "), err


def test_each_candidate_first_runs_the_widest_step_its_runs_can_meet():
    """Sampled steps rarely hold the longest rows; the widest step is what must fit (GPU: the
    allocator raises out of memory there, not hours into a run)."""
    from nli_qlora.data.batches import Encoded

    rows = [Encoded(tuple(range(3, 3 + n)), n % 3, i) for i, n in enumerate([5, 40, 7, 33, 9, 12, 38, 6])]
    micro = tune.widest_step(rows, batch_size=4, grad_accum=2, pad_id=0, pad_multiple=8)
    assert [tuple(b["input_ids"].shape) for b in micro] == [(2, 40), (2, 40)]  # 12, 33 | 38, 40 -> padded to 40
    assert sorted(int(n) for b in micro for n in b["attention_mask"].sum(1)) == [12, 33, 38, 40]
    lm = tune.widest_step(rows, batch_size=2, grad_accum=1, pad_id=0, pad_multiple=8, answer=[[1, 2], [1], [1, 2, 3]])
    assert lm[0]["input_ids"].shape == (2, 48)  # the lm loss appends answer tokens: 38 + 3, 40 + 1 -> 48
