"""What the issue 15 head experiments (bench/*_experiment.py) share: the shared data folder, the
head's training rows with their pooled encoder vectors (cached under /tmp/triage-cache), the
shipped encoder with its pooled output exposed, and paired bootstrap figures.

Run the experiments from the repo root with ``PYTHONPATH=$PWD``; they import this as ``_common``
(the script's own folder is first on ``sys.path``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path("/tmp/triage-cache")
_HANDLE = re.compile(r"@\w+")
_NUMBER = re.compile(r"\b[\w-]*\d{5,}[\w-]*\b")


def shared_dir() -> Path:
    """The shared material folder (``DOORSTEP_SHARED``, default /work/shared)."""
    return Path(os.environ.get("DOORSTEP_SHARED", "/work/shared"))


def masked(text: str) -> str:
    """Every @handle -> @user, order/tracking numbers (5+ digits) -> 12345."""
    return _NUMBER.sub("12345", _HANDLE.sub("@user", text))


def pooled_classifier() -> Any:
    """The shipped encoder (classifiers/model), copied under the cache with its pooled vector as an output."""
    from classifiers.head_fit import add_pooled_output
    from classifiers.onnx_backend import OnnxClassifier

    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    for f in ("model.onnx", "config.json", "tokenizer.json", "calibration.json"):
        shutil.copy(Path("classifiers/model") / f, tmp / f)
    add_pooled_output(tmp / "model.onnx")
    clf = OnnxClassifier(tmp)
    clf._outputs.append("pooled")
    return clf


def embeddings(rows: Sequence[dict], variant: str) -> tuple[np.ndarray, np.ndarray]:
    """Pooled vectors and intent priors of ``rows`` (texts as they are, or ``masked``), cached per variant."""
    from classifiers.head_fit import encode

    import hashlib

    digest = hashlib.sha1("\x00".join(r["text"] for r in rows).encode("utf-8")).hexdigest()[:12]
    path = CACHE / f"pooled-{variant}-{digest}.npz"  # keyed by the texts: a relabel that adds or drops rows is a new file
    if path.exists():
        z = np.load(path)
        return z["pooled"], z["prior"]
    clf = pooled_classifier()
    texts = [r["text"] if variant == "plain" else masked(r["text"]) for r in rows]
    pooled, prior = [], []
    for i in range(0, len(texts), 256):
        p, q = encode(clf, texts[i:i + 256])
        pooled.append(p)
        prior.append(q)
    out_pooled, out_prior = np.vstack(pooled), np.vstack(prior)
    np.savez(path, pooled=out_pooled, prior=out_prior)
    return out_pooled, out_prior


def head_data(variant: str = "plain") -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The head's training rows (``classifiers.head_fit.head_rows``) with their pooled vectors and priors."""
    from classifiers.head_fit import head_rows

    rows = head_rows(shared_dir())
    pooled, prior = embeddings(rows, variant)
    return rows, pooled, prior


def head_arrays(rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intent, source weight, "is a guide-labelled real tweet" and its outer fold (-1: always trained
    on) per row, the folds by customer exactly as ``classifiers.head_fit`` scores the shipped head."""
    from classifiers.head_fit import SOURCE_WEIGHTS, customer_folds

    y = np.array([r["intent"] for r in rows])
    w = np.array([SOURCE_WEIGHTS[r["source"]] for r in rows])
    lab = np.array([r["source"] == "twcs-labelled" for r in rows])
    folds = customer_folds(r["group"] for r in rows if r["source"] == "twcs-labelled")
    fold = np.array([folds[r["group"]] if r["source"] == "twcs-labelled" else -1 for r in rows])
    return y, w, lab, fold


def f1(gold: np.ndarray, pred: np.ndarray) -> float:
    """F1 of two boolean arrays."""
    tp = np.sum(gold & pred)
    fp = np.sum(~gold & pred)
    fn = np.sum(gold & ~pred)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def binary_macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    """Macro-F1 over the two classes of 0/1 arrays (complaint or not)."""
    return float(np.mean([f1(gold == c, pred == c) for c in (0, 1)]))


def resamples(n: int, rng: np.random.Generator, times: int = 1000) -> list[np.ndarray]:
    """``times`` bootstrap resamples of ``n`` indices."""
    return [rng.integers(0, n, n) for _ in range(times)]


def paired(metrics: Mapping[str, Callable[[np.ndarray, np.ndarray], float]], gold: np.ndarray,
           base: np.ndarray, cand: np.ndarray, names: tuple[str, str, str],
           idx: list[np.ndarray] | None = None) -> dict[str, list[float]]:
    """[point, 2.5 %, 97.5 %] of each metric for the baseline, the candidate and candidate - baseline,
    on the same resamples (``idx``; default 1,000 drawn with seed 7). ``names``: the three labels,
    each followed by the metric's name in the keys (the label alone where the metric's name is "")."""
    if idx is None:
        idx = resamples(len(gold), np.random.default_rng(7))
    out: dict[str, list[float]] = {}

    def figure(point: float, boots: list[float]) -> list[float]:
        return [round(point, 3), *np.round(np.percentile(boots, [2.5, 97.5]), 3).tolist()]

    for name, m in metrics.items():
        label = (lambda v: f"{v} {name}") if name else (lambda v: v)
        for v, p in zip(names, (base, cand)):
            out[label(v)] = figure(m(gold, p), [m(gold[i], p[i]) for i in idx])
        out[label(names[2])] = figure(m(gold, cand) - m(gold, base),
                                      [m(gold[i], cand[i]) - m(gold[i], base[i]) for i in idx])
    return out


def print_report(report: Mapping[str, Any], width: int) -> None:
    for k, v in report.items():
        if isinstance(v, list):
            print(f"{k:{width}s} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]")
