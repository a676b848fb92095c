"""Classifiers: what a post says (sentiment, complaint, intent, urgency) as :class:`Labels`.

Every backend answers the same batch-first :class:`Classifier` protocol, so the
pipeline, the ``doorstep classify`` command and the console never care which one
runs. Backends are found through a small registry, by name: the built-in names
point at import paths and are imported only when asked for, so a shop that runs
the transparent baseline never pays for onnxruntime or torch.

Specs understood by :func:`load_classifier`::

    baseline                     keyword rules + VADER, no model files
    onnx                         the fine-tuned model shipped in classifiers/model/
    onnx:<dir>                   an exported ONNX model in another directory
    <dir>                        the same, for a folder holding model.onnx (what ``doorstep train`` writes)
    transformers:<dir-or-hf-id>  a Hugging Face model (needs the ``train`` extras)
    <name>[:<arg>]               anything registered with :func:`register`
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from doorstep.classifying import classify_texts
from doorstep.models import Labels

__all__ = [
    "Classifier",
    "classify",
    "default_spec",
    "known_names",
    "load_classifier",
    "register",
]

#: Environment variable that picks the default classifier spec (e.g. ``baseline``).
ENV_VAR = "DOORSTEP_CLASSIFIER"
PACKAGE_DIR = Path(__file__).resolve().parent
#: Where the ``onnx`` backend looks for the shipped model.
MODEL_DIR = PACKAGE_DIR / "model"


@runtime_checkable
class Classifier(Protocol):
    """Reads posts in batches: one :class:`Labels` per text, same order and length as the input.

    Batch-first because every real backend is much faster per text in batches.
    Implementations must not raise on odd but real input (empty strings, very long
    texts, emoji, right-to-left scripts, HTML); they flag such posts with
    ``needs_review`` instead, so one strange post never stops an import.
    """

    name: str

    def classify(self, texts: Sequence[str]) -> list[Labels]: ...

    # Optional: ``reads_addressed = True`` says ``classify`` also takes ``addressed=[bool, ...]``, one per
    # text: the post is written to someone (a reply in a thread, a private message) even where its text has
    # no @mention. Callers pass it through :func:`classify` (or ``doorstep.classifying.classify_mentions``).


Factory = Callable[..., Classifier]

_registry: dict[str, Factory] = {}
#: Built-in backends as "module:attribute", imported on first use so optional heavy
#: dependencies (onnxruntime, torch, transformers) load only when that backend is chosen.
_BUILTINS: dict[str, str] = {
    "baseline": "classifiers.baseline:BaselineClassifier",
    "onnx": "classifiers.onnx_backend:OnnxClassifier",
    "transformers": "classifiers.transformers_backend:TransformersClassifier",
}
#: Built-ins that cannot run without an argument after the colon.
_NEEDS_ARGUMENT = frozenset({"transformers"})


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator that makes ``factory`` loadable as ``name`` or ``name:<arg>``.

    A registered name shadows a built-in of the same name, so a deployment (or a
    test) can swap a backend without editing this package.
    """
    if not name or ":" in name:
        raise ValueError(f"classifier name {name!r} must be non-empty and contain no ':'")

    def decorate(factory: Factory) -> Factory:
        _registry[name] = factory
        return factory

    return decorate


def known_names() -> list[str]:
    """Names :func:`load_classifier` accepts, built-in and registered, sorted."""
    return sorted(set(_BUILTINS) | set(_registry))


def _describe_known() -> str:
    return ", ".join(f"{n}:<model>" if n in _NEEDS_ARGUMENT else n for n in known_names())


#: Said with an unknown name: a lead who has just retrained holds a folder, not a backend name.
_FOLDER_FORMS = "or give a model folder from `doorstep train` (one holding model.onnx), or onnx:<model folder>"


def _resolve(name: str) -> Factory:
    if name in _registry:
        return _registry[name]
    target = _BUILTINS.get(name)
    if target is None:
        raise ValueError(f"unknown classifier {name!r}: known names are {_describe_known()}; {_FOLDER_FORMS}")
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"classifier {name!r} is not available here: {exc}") from exc
    return getattr(module, attribute)


def _onnx_available() -> bool:
    if not (MODEL_DIR / "model.onnx").is_file():
        return False
    try:
        importlib.import_module("classifiers.onnx_backend")
    except Exception:  # a missing runtime or a broken backend means: fall back to the baseline
        return False
    return True


def default_spec() -> str:
    """The spec used when none is given.

    ``$DOORSTEP_CLASSIFIER`` wins; otherwise the shipped ONNX model when its file is
    present and its backend imports; otherwise the dependency-free baseline, so a
    fresh checkout always classifies something.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    return "onnx" if _onnx_available() else "baseline"


def load_classifier(spec: str | None = None) -> Classifier:
    """Build the classifier named by ``spec`` (see the module docstring); ``None`` means :func:`default_spec`.

    Raises ``ValueError`` (which the CLI shows as a one-line error) when the name
    is unknown (the message lists the known names), a required model argument is
    missing, or the backend's optional dependencies are not installed.
    """
    spec = (spec or "").strip() or default_spec()
    if spec.partition(":")[0].strip() not in known_names() and (Path(spec).expanduser() / "model.onnx").is_file():
        spec = f"onnx:{spec}"  # the folder `doorstep train` wrote, as `doorstep classify --model DIR` takes it
    name, colon, argument = spec.partition(":")
    name = name.strip()
    argument = argument.strip()
    if not argument and (colon or (name in _NEEDS_ARGUMENT and name not in _registry)):
        raise ValueError(f"classifier {name!r} needs a model after the colon, e.g. {name}:<dir-or-hf-id>")
    factory = _resolve(name)
    return factory(argument) if argument else factory()


def check_configured(config: Any) -> None:
    """doorstep.toml's ``classifier`` names a known classifier or a model folder: checked when any command starts,
    so a misspelt name is one line naming the file and key there, not a ValueError at the first import (README
    audit). Nothing is loaded here (a model takes seconds)."""
    from doorstep.config import ConfigError, config_source

    spec = (getattr(config, "classifier", None) or "").strip()
    if not spec:
        return
    name = spec.partition(":")[0].strip()
    if name in known_names() or (Path(spec).expanduser() / "model.onnx").is_file():
        return
    raise ConfigError(f"{config_source(config)}: classifier: unknown classifier {spec!r}: known names are "
                      f"{_describe_known()}; {_FOLDER_FORMS}")


_default: Classifier | None = None


def classify(texts: Sequence[str], classifier: Classifier | None = None,
             addressed: Sequence[bool | None] | None = None) -> list[Labels]:
    """Label ``texts`` with ``classifier``, or with the default one (built once, then reused).

    ``addressed`` (one per text, optional) says which posts are written to someone whether or not their
    text shows an @mention (a reply in a thread, a private message); it reaches only a classifier that
    says ``reads_addressed = True``, so every other classifier keeps the one-argument ``classify``."""
    global _default
    if classifier is None:
        if _default is None:
            _default = load_classifier()
        classifier = _default
    return classify_texts(classifier, texts, addressed)
