"""A newcomer's first hour (issue 18): every documented command works as written.

Each test names the item of the issue it covers. They run the real ``doorstep`` command line
(click's runner, or a subprocess where the process boundary matters) and assert on what a
person sees: the one-line error, the exit status, the files left behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from doorstep.cli import cli

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], **kwargs):
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


# ------------------------------------------------------------------ item 8: train and evaluate
def test_train_without_the_train_extra_names_the_extra_in_one_line(monkeypatch, tmp_path):
    import classifiers.cli

    monkeypatch.setitem(classifiers.cli.TRAIN_MODULES, "no_such_module_for_doorstep", "no-such-package")
    result = _run(["--db", str(tmp_path / "x.db"), "train"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "ModuleNotFoundError" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "no-such-package" in error[0] and "'.[train]'" in error[0]


def test_train_writes_a_new_folder_by_default_never_the_shipped_model(monkeypatch, tmp_path):
    import classifiers.cli
    import classifiers.train
    from classifiers.onnx_backend import MODEL_DIR

    seen: dict[str, object] = {}

    def fake_train(shared, out_dir, feedback, config, log):
        seen["out"] = out_dir
        return {"ok": True}

    monkeypatch.setattr(classifiers.cli, "_require_train_extra", lambda: None)
    monkeypatch.setattr(classifiers.train, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    result = _run(["--db", str(tmp_path / "x.db"), "train"])
    assert result.exit_code == 0, result.output
    out = Path(str(seen["out"])).resolve()
    assert out != Path(MODEL_DIR).resolve() and not out.is_relative_to(REPO / "classifiers")
    assert out.name.startswith("doorstep-model-")


@pytest.mark.parametrize("flags, expect_write", [([], False), (["--write"], True)])
def test_evaluate_rewrites_results_only_when_asked(monkeypatch, flags, expect_write):
    import classifiers.evaluate

    seen: dict[str, object] = {}
    monkeypatch.setattr(classifiers.evaluate, "evaluate", lambda spec, shared=None, write=True: seen.update(write=write) or {})
    result = _run(["evaluate", *flags])
    assert result.exit_code == 0, result.output
    assert seen["write"] is expect_write
