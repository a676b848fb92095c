"""Which int8 matrix-multiply kernel the shipped model runs on, chosen per CPU.

The model's quantised weights can be stored two ways with the same arithmetic:
``int8`` weights ``w`` with zero point ``zp``, or ``uint8`` weights ``w + 128`` with zero point
``zp + 128`` (``(w + 128) - (zp + 128) = w - zp``). onnxruntime picks its kernel from the type:

* **int8 weights** (uint8 activations x int8 weights, "U8S8"): on CPUs with AVX-512 VNNI this is
  one ``VPDPBUSD`` per four products, which never saturates; measured on this project's AVX-512
  VNNI machine it is **1.6x faster** than uint8 weights (808 against 494 posts/s, 427 against 257
  posts per CPU-second, ``bench/classifier_bench.py``, bench/RESULTS.md). On CPUs *without* VNNI
  (most AVX2 machines) the same type uses ``VPMADDUBSW``, which saturates pairs of products at 16
  bits: the model answered differently there (intent scores off by up to 0.08).
* **uint8 weights** ("U8U8") widen to 16 bits first and cannot saturate anywhere, at the cost of
  speed on VNNI machines.

So the model ships with uint8 weights (right on every CPU, and nothing else is needed to run it),
and :func:`model_for_this_cpu` hands onnxruntime the int8 form where the CPU has AVX-512 VNNI, the
only case where both kernels give exactly the same numbers (tests/test_int8_weights.py compares
them on this machine). ``DOORSTEP_INT8_WEIGHTS=signed|unsigned`` overrides the choice (``auto``
is the default).
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path
from typing import Any, Literal

import numpy as np

Form = Literal["signed", "unsigned"]

#: The environment variable that overrides the choice of weight type (``auto``, ``signed``, ``unsigned``).
SETTING = "DOORSTEP_INT8_WEIGHTS"


def cpu_has_vnni(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AVX-512 VNNI (Linux x86-64, read from ``/proc/cpuinfo``).

    Only AVX-512 VNNI is trusted: it is where the int8 kernel was compared with the uint8 one and
    gave the same numbers. Other CPUs (AVX2, AVX-VNNI without AVX-512, ARM) keep uint8 weights."""
    if cpuinfo is None:
        if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
            return False
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return "avx512_vnni" in line.split(":", 1)[-1].split()
    return False


def chosen_form(cpuinfo: str | None = None) -> Form:
    """The weight form to run: :data:`SETTING` if set, else int8 ("signed") on AVX-512 VNNI."""
    wanted = os.environ.get(SETTING, "auto").strip().lower() or "auto"
    if wanted in ("signed", "unsigned"):
        return wanted  # type: ignore[return-value]
    if wanted != "auto":
        raise ValueError(f"{SETTING}={wanted!r}: use auto, signed or unsigned")
    return "signed" if cpu_has_vnni(cpuinfo) else "unsigned"


def flip_weights(model: Any, to: Form) -> int:
    """Rewrite ``model``'s (an ``onnx.ModelProto``) int8 matmul weights and their zero points into
    ``to`` form in place; returns how many tensors changed (0 when already in that form).

    Only weights that carry their zero point are touched (the quantizer always writes one): without
    it the default 0 would have to become 128, a change of graph rather than of values."""
    import onnx
    from onnx import numpy_helper

    source_type = onnx.TensorProto.UINT8 if to == "signed" else onnx.TensorProto.INT8
    shift, dtype = (-128, np.int8) if to == "signed" else (128, np.uint8)
    initializers = {t.name: t for t in model.graph.initializer}
    changed: set[str] = set()

    def flip(name: str) -> None:
        tensor = initializers.get(name)
        if tensor is None or name in changed or tensor.data_type != source_type:
            return
        values = numpy_helper.to_array(tensor).astype(np.int16) + shift
        tensor.CopyFrom(numpy_helper.from_array(values.astype(dtype), name))
        changed.add(name)

    for node in model.graph.node:
        if node.op_type == "MatMulInteger" and len(node.input) > 3 and node.input[3]:  # A, B, a_zp, b_zp
            flip(node.input[1])
            flip(node.input[3])
        elif node.op_type == "QAttention" and len(node.input) > 7 and node.input[7]:  # ..., weight_zp
            flip(node.input[1])
            flip(node.input[7])
    return len(changed)


def cache_dir() -> Path:
    """Where rewritten models are kept: ``$DOORSTEP_CACHE``, else ``$XDG_CACHE_HOME/doorstep``,
    else ``~/.cache/doorstep``."""
    if os.environ.get("DOORSTEP_CACHE"):
        return Path(os.environ["DOORSTEP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "doorstep"


def model_for_this_cpu(model_path: Path, form: Form | None = None) -> str | bytes:
    """What to give ``onnxruntime.InferenceSession`` for ``model_path``: the path itself when the
    chosen form is the shipped uint8 one, else a path to (or the bytes of) the rewritten model.

    The rewrite needs the ``onnx`` package, whose import alone takes ~1 s here; it is done once per
    model file and kept in :func:`cache_dir` under the file's SHA-256, so later loads read a file.
    Where the cache cannot be written the bytes are handed over directly; where ``onnx`` is
    missing the shipped weights run as they are (right, only slower)."""
    form = form or chosen_form()
    if form == "unsigned":
        return str(model_path)  # the shipped form
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:20]
    cached = cache_dir() / f"model-{digest}-{form}.onnx"
    if cached.is_file():
        return str(cached)
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency; an old environment still runs, slower
        return str(model_path)
    model = onnx.load(str(model_path))
    if not flip_weights(model, form):
        return str(model_path)
    data = model.SerializeToString()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, cached)  # whole or not at all, even with two processes writing it
    except OSError:
        return data
    return str(cached)
