"""The label set is data: names, label words and the parse map live in RunConfig, so config.json and
every checkpoint carry them; an old config.json without them is the NLI three-class set; and a
two-class variant of the built-in data (entailment vs not) trains and scores end to end."""

from __future__ import annotations

import json

import pytest

from nli_qlora.cli.score import main as score_main
from nli_qlora.cli.train import main as train_main
from nli_qlora.config import RunConfig, preset
from nli_qlora.data.builtin import tiny_split
from nli_qlora.infra.errors import UserError
from nli_qlora.labels import NLI, UNLABELED, LabelSet
from nli_qlora.run.checkpoint import config_of, latest
from nli_qlora.run.metrics import read_metrics

TWO_CLASS = ["--labels", "entailment", "not_entailment", "--label-words", " yes", " no",
             "--label-map", "1=not_entailment", "2=not_entailment", "neutral=not_entailment",
             "contradiction=not_entailment"]


def test_a_config_written_before_label_sets_loads_as_the_nli_three_classes(tmp_path):
    old = preset("tiny").to_dict()
    for name in ("labels", "label_map"):
        del old[name]
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = RunConfig.load(tmp_path / "config.json")
    assert cfg.label_set == LabelSet(NLI.names, preset("tiny").label_words)
    assert cfg.label_set.names == ("entailment", "neutral", "contradiction")


def test_a_label_is_an_alias_a_name_or_a_class_number():
    two = LabelSet(("entailment", "not_entailment"), (" yes", " no"), (("2", "not_entailment"),
                                                                       ("contradiction", "not_entailment")))
    assert [two.parse(v) for v in (0, 1, 2, "2", "Contradiction", "not_entailment", " entailment ")] == [0, 1, 1, 1, 1, 1, 0]
    assert two.parse(-1) is UNLABELED and two.parse("-") is UNLABELED
    with pytest.raises(ValueError, match="unknown label 'neutral'"):
        two.parse("neutral")
    with pytest.raises(ValueError, match="unknown label 3"):
        two.parse(3)


@pytest.mark.parametrize("flags, message", [
    ({"labels": ("a",), "label_words": (" a",)}, "--labels: needs two or more different names"),
    ({"labels": ("a", "b"), "label_words": (" a", " b", " c")}, "--label-words: needs exactly two words, got 3"),
    ({"labels": ("a", "b"), "label_words": (" a", " b"), "label_map": ("x=c",)}, "--label-map: 'x=c': 'c' is not one"),
    ({"labels": ("a", "b"), "label_words": (" a", " b"), "label_map": ("x",)}, "--label-map: 'x' is not TEXT=NAME"),
])
def test_a_bad_label_set_is_one_error_naming_the_flag(flags, message):
    with pytest.raises(UserError, match=message):
        RunConfig(**{**preset("tiny").to_dict(), **flags}).validate()


def test_a_two_class_variant_trains_and_scores_end_to_end(tmp_path, capsys):
    run_dir = tmp_path / "two"
    assert train_main(["--preset", "tiny", "--epochs", "2", "--output-dir", str(run_dir), "--quiet", *TWO_CLASS]) == 0
    names = ["entailment", "not_entailment"]
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "eval"]
    assert all(e["labels"] == names and len(e["confusion"]) == 2 for e in evals)
    assert sum(map(sum, evals[-1]["confusion"])) == 300 and evals[-1]["balanced_accuracy"] > 0.9  # it learned
    checkpoint = latest(run_dir)
    assert config_of(checkpoint).label_set.names == tuple(names)  # the checkpoint carries its label set
    rows = [json.loads(line) for line in (run_dir / "predictions/test-epoch2.jsonl").read_text().splitlines()]
    assert {r["gold"] for r in rows} == set(names) and all(set(r["probabilities"]) == set(names) for r in rows)
    assert (run_dir / "report.md").is_file()

    pairs = tmp_path / "pairs.jsonl"  # text labels of the three-class data: the map folds two into one
    pairs.write_text("".join(json.dumps({**r, "label": ["entailment", "neutral", "contradiction"][r["label"]]}) + "\n"
                             for r in tiny_split("test")[:40]))
    capsys.readouterr()
    assert score_main(["--checkpoint", str(run_dir), "--input", str(pairs), "--output", str(tmp_path / "p.csv"),
                       "--metrics-out", str(tmp_path / "m.json"), "--quiet"]) == 0
    header = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    assert header[5:7] == ["p_entailment", "p_not_entailment"]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["labels"] == names and metrics["rows"] == 40
