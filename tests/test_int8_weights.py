"""The int8 weights the model runs on are chosen per CPU (classifiers/int8_weights.py): the faster
int8 form on AVX-512 VNNI, the shipped uint8 form elsewhere, and the same numbers either way."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from classifiers.int8_weights import SETTING, chosen_form, cpu_has_vnni, flip_weights, model_for_this_cpu

from test_classify_same import _posts

MODEL = Path(__file__).resolve().parent.parent / "classifiers" / "model" / "model.onnx"

VNNI_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16\n"
AVX2_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx_vnni\n"  # AVX-VNNI without AVX-512: not trusted
AVX512_NO_VNNI = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl\n"


def test_int8_weights_only_where_the_cpu_has_avx512_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SETTING, raising=False)
    assert cpu_has_vnni(VNNI_CPU) and chosen_form(VNNI_CPU) == "signed"
    assert not cpu_has_vnni(AVX2_CPU) and chosen_form(AVX2_CPU) == "unsigned"
    assert not cpu_has_vnni(AVX512_NO_VNNI) and chosen_form(AVX512_NO_VNNI) == "unsigned"
    assert chosen_form("no flags line at all") == "unsigned"


def test_the_setting_overrides_the_choice_and_a_wrong_value_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SETTING, "unsigned")
    assert chosen_form(VNNI_CPU) == "unsigned"
    monkeypatch.setenv(SETTING, "Signed ")
    assert chosen_form(AVX2_CPU) == "signed"
    monkeypatch.setenv(SETTING, "fast")
    with pytest.raises(ValueError, match=f"{SETTING}='fast': use auto, signed or unsigned"):
        chosen_form(VNNI_CPU)


def test_unsigned_runs_the_shipped_file_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_CACHE", str(tmp_path))
    assert model_for_this_cpu(MODEL, "unsigned") == str(MODEL)
    assert not list(tmp_path.iterdir())


def test_signed_weights_are_the_shipped_ones_minus_128_and_kept_for_the_next_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    monkeypatch.setenv("DOORSTEP_CACHE", str(tmp_path / "cache"))
    first = model_for_this_cpu(MODEL, "signed")
    assert isinstance(first, str) and Path(first).parent == tmp_path / "cache"
    assert model_for_this_cpu(MODEL, "signed") == first  # the next load reads the kept file
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(first).name]  # no partial file left

    shipped, signed = onnx.load(str(MODEL)), onnx.load(first)
    shipped_init = {t.name: t for t in shipped.graph.initializer}
    weights = [n.input[1] for n in signed.graph.node if n.op_type in ("MatMulInteger", "QAttention")]
    signed_init = {t.name: t for t in signed.graph.initializer}
    assert weights and {signed_init[w].data_type for w in weights} == {onnx.TensorProto.INT8}
    for name in weights:
        before = numpy_helper.to_array(shipped_init[name]).astype(np.int16)
        after = numpy_helper.to_array(signed_init[name]).astype(np.int16)
        assert np.array_equal(after, before - 128)
    # and back: the uint8 form is exactly what ships
    assert flip_weights(signed, "unsigned") == flip_weights(onnx.load(str(MODEL)), "signed")
    back = {t.name: numpy_helper.to_array(t) for t in signed.graph.initializer}
    assert all(np.array_equal(back[t.name], numpy_helper.to_array(t)) for t in shipped.graph.initializer)


def test_where_the_cache_cannot_be_written_the_bytes_are_handed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("DOORSTEP_CACHE", str(blocker / "doorstep"))
    assert isinstance(model_for_this_cpu(MODEL, "signed"), bytes)


@pytest.mark.skipif(not cpu_has_vnni(), reason="this CPU has no AVX-512 VNNI: the int8 form is never chosen here")
def test_on_avx512_vnni_both_forms_give_exactly_the_same_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    from classifiers.onnx_backend import OnnxClassifier

    monkeypatch.setenv("DOORSTEP_CACHE", str(tmp_path))
    texts = _posts(300)
    logits = {}
    for form in ("signed", "unsigned"):
        monkeypatch.setenv(SETTING, form)
        logits[form] = OnnxClassifier().logits(texts)
    assert os.listdir(tmp_path)  # the signed run did run the rewritten model
    for head, values in logits["unsigned"].items():
        assert np.array_equal(values, logits["signed"][head]), head
