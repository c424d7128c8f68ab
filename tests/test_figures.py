"""The report's matplotlib import, started on a thread while the run's last evaluation runs
(run.figures.import_meanwhile). Each case in a fresh interpreter: what matters is what a process that
never imported matplotlib does. That the pictures are the same as a separate process draws them is
test_train_e2e's rebuilt-report test (the train command imports meanwhile, `nli_qlora.report` does not)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import json, sys, pathlib
    {block}
    from nli_qlora.run import figures
    before = "matplotlib" in sys.modules
    thread = figures.import_meanwhile()
    thread.join()
    records = [{{"event": "step", "step": 1, "epoch": 1, "epoch_step": 1, "loss": 1.0}},
               {{"event": "step", "step": 2, "epoch": 1, "epoch_step": 2, "loss": 0.5}}]
    written = figures.write_figures(pathlib.Path(sys.argv[1]), records, None)
    backend = sys.modules["matplotlib"].get_backend() if "matplotlib" in sys.modules else None
    print(json.dumps({{"before": before, "thread": thread.name, "backend": backend, "written": written}}))
""")

NO_MATPLOTLIB = textwrap.dedent("""
    class NoMatplotlib:
        def find_spec(self, name, path, target=None):
            if name.partition(".")[0] == "matplotlib":
                raise ImportError("No module named 'matplotlib'")
    sys.meta_path.insert(0, NoMatplotlib())
""")


def _probe(tmp_path, block: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(block=block), str(tmp_path)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_matplotlib_is_imported_on_a_thread_with_the_backend_the_report_draws_with(tmp_path):
    got = _probe(tmp_path)
    assert got["before"] is False  # nothing else in nli_qlora imported it
    assert got["thread"] == "nli_qlora-import-matplotlib"
    assert got["backend"].lower() == "agg"
    assert got["written"] == ["learning_curve.png"]
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_thread_ends_and_the_report_goes_without_pictures(tmp_path):
    got = _probe(tmp_path, NO_MATPLOTLIB)
    assert got == {"before": False, "thread": "nli_qlora-import-matplotlib", "backend": None, "written": None}
    assert not list(tmp_path.iterdir())
