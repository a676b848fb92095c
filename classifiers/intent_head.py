"""The care-tweet intent head: intent fitted on real care tweets, on top of the shipped encoder.

Why it exists (issue 15): v6's intent head learnt parcels from posts the team wrote, and on real
tweets to a shop's care handle it found delivery problems worse than a plain delivery-word
regex (it read "still not here", "driver left it on the step" as ``product_or_account``). The
encoder's pooled sentence vector still carries what is needed; what was missing is a head
fitted on real care tweets, and the high-precision evidence a keyword list has. So:

* **Features**: the encoder's mean-pooled vector (the ONNX model's ``pooled`` output),
  standardised, plus :data:`EVIDENCE`: a few delivery-evidence patterns ("marked delivered",
  "still not here", tracking, driver, "left at", damaged, missing ...) as 0/1 features, so
  the head *weighs* keyword evidence instead of ignoring it.
* **Two linear heads**, each a class-balanced L2 logistic regression fitted in numpy (a few
  seconds, no torch): a 10-way ``intent`` head, and a binary ``delivery`` head ("any of the five
  delivery intents or not") which sees the evidence features. The final distribution is a
  mixture: P(delivery intent i) = q * p_i / sum(p over delivery intents), and the rest share
  1 - q, where q is the delivery head's probability. It still sums to 1, so the
  ``classify`` contract (scores per intent) is unchanged.
* **Calibration**: one power (temperature) on the mixed distribution, fitted on
  out-of-fold predictions for real tweets.

Training data and its selection are in :mod:`classifiers.head_fit`; the figures in
MODEL_CARD.md ("How v7 was chosen").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from doorstep.models import INTENTS

HEAD_FILE = "intent_head.json"
N_DELIVERY = 5  # INTENTS[:5] are the delivery intents (doorstep.models.DELIVERY_INTENTS)

#: High-precision delivery evidence, as 0/1 features of the delivery head (matched case-insensitively
#: on the prepared text). Kept in the model file too, so a model always reads what it was fitted on.
EVIDENCE: tuple[str, ...] = (
    r"\bdeliver\w*",
    r"\b(parcels?|packages?)\b",
    r"\btrack(ing|ed)?\b",
    r"\b(shipp?(ed|ing)?|dispatch\w*)\b",
    r"\b(still (not|hasn'?t|haven'?t|no)|not (here|arrived|received)|never (arrived|came|received)|"
    r"hasn'?t (arrived|come)|yet to (arrive|receive))\b",
    r"\bmarked (as )?delivered|says (it was )?delivered|shows (as )?delivered",
    r"\b(driver|courier|postman|delivery (guy|man|person))\b",
    r"\b(left (it )?(at|on|in|outside|with)|neighbou?r|porch|doorstep|front door|safe place|lobby)\b",
    r"\b(missing|lost|stolen|never received|didn'?t (get|receive))\b",
    r"\b(damaged|broken|smashed|crushed|wrong (item|size|colou?r|order|product)|sent (me )?the wrong)\b",
    r"\b(late|delay(ed)?|overdue|estimated|expected|due (on|by)?|yesterday|days?)\b",
    r"\b(refund\w*|return\w*|money back|replacement|cancel\w*)\b",
    r"\b(order(ed|s)?)\b",
    # Counter-evidence: flights, trains and rides are not deliveries (guide sections 5 and 7). Bags and
    # luggage are not counter-evidence: airline lost baggage is lost_or_missing, damaged luggage
    # damaged_or_wrong (sections 3-4), and "bag" is also a grocery or food-order bag (issue 15, fourth round).
    r"\b(flight|train|uber|lyft|ride)\b",
)
#: Scale of the 0/1 evidence features next to the standardised pooled vector.
EVIDENCE_SCALE = 3.0


def evidence_features(texts: Sequence[str], patterns: Sequence[str] = EVIDENCE) -> np.ndarray:
    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    out = np.zeros((len(texts), len(compiled)), dtype=np.float32)
    for i, text in enumerate(texts):
        for j, pattern in enumerate(compiled):
            if pattern.search(text):
                out[i, j] = 1.0
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray, classes: int, l2: float,
                 iterations: int = 400, lr: float = 0.05, offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted multinomial logistic regression with L2 (Adam on the full batch; convex, so it
    converges to the same optimum as L-BFGS here, and needs nothing beyond numpy)."""
    n, d = x.shape
    w = np.zeros((d, classes))
    b = np.zeros(classes)
    onehot = np.eye(classes)[y]
    sw = weights / weights.sum()
    m_w = np.zeros_like(w); v_w = np.zeros_like(w); m_b = np.zeros_like(b); v_b = np.zeros_like(b)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, iterations + 1):
        z = x @ w + b
        p = _softmax(z if offset is None else z + offset)
        g = (p - onehot) * sw[:, None]
        grad_w = x.T @ g + 2 * l2 * w
        grad_b = g.sum(axis=0)
        for param, grad, m, v in ((w, grad_w, m_w, v_w), (b, grad_b, m_b, v_b)):
            m *= beta1; m += (1 - beta1) * grad
            v *= beta2; v += (1 - beta2) * grad * grad
            param -= lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
    return w, b


def balanced_weights(y: np.ndarray, classes: int, power: float = 0.5) -> np.ndarray:
    counts = np.bincount(y, minlength=classes).astype(float)
    per_class = (len(y) / np.maximum(counts, 1.0) / classes) ** power
    return per_class[y]


@dataclass
class IntentHead:
    mean: np.ndarray
    scale: np.ndarray
    intent_w: np.ndarray
    intent_b: np.ndarray
    delivery_w: np.ndarray
    delivery_b: np.ndarray
    temperature: float = 1.0
    use_prior: bool = False
    patterns: tuple[str, ...] = EVIDENCE
    info: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ inference
    def _x(self, pooled: np.ndarray) -> np.ndarray:
        return (pooled.astype(np.float64) - self.mean) / self.scale

    def raw_probabilities(self, pooled: np.ndarray, texts: Sequence[str], prior: np.ndarray | None = None,
                          evidence: np.ndarray | None = None) -> np.ndarray:
        """The mixed distribution before calibration (rows sum to 1).

        ``prior``: the encoder's own calibrated intent log-probabilities; with :attr:`use_prior`
        the 10-way head learns a correction to them (L2 pulls towards the encoder's head, not to 0).
        ``evidence``: :meth:`evidence` of ``texts`` when the caller already has it (the classifier
        reads it while the encoder runs on other threads)."""
        x = self._x(pooled)
        z = x @ self.intent_w + self.intent_b
        if self.use_prior:
            if prior is None:
                raise ValueError("this intent head needs the encoder's intent log-probabilities")
            z = z + prior
        p = _softmax(z)
        xe = np.hstack([x, (self.evidence(texts) if evidence is None else evidence) * EVIDENCE_SCALE])
        q = _softmax(xe @ self.delivery_w + self.delivery_b)[:, 1:2]
        delivery = p[:, :N_DELIVERY] / np.maximum(p[:, :N_DELIVERY].sum(axis=1, keepdims=True), 1e-12)
        rest = p[:, N_DELIVERY:] / np.maximum(p[:, N_DELIVERY:].sum(axis=1, keepdims=True), 1e-12)
        return np.hstack([q * delivery, (1 - q) * rest])

    def probabilities(self, pooled: np.ndarray, texts: Sequence[str], prior: np.ndarray | None = None,
                      evidence: np.ndarray | None = None) -> np.ndarray:
        return temper(self.raw_probabilities(pooled, texts, prior, evidence), self.temperature)

    def evidence(self, texts: Sequence[str]) -> np.ndarray:
        """The 0/1 evidence features of ``texts`` with this head's own patterns."""
        return evidence_features(texts, self.patterns)

    # ------------------------------------------------------------------ files
    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / HEAD_FILE
        body = {
            "labels": list(INTENTS),
            "patterns": list(self.patterns),
            "evidence_scale": EVIDENCE_SCALE,
            "temperature": round(float(self.temperature), 4),
            "use_prior": self.use_prior,
            "info": self.info,
            "mean": np.round(self.mean, 6).tolist(),
            "scale": np.round(self.scale, 6).tolist(),
            "intent_w": np.round(self.intent_w, 6).tolist(),
            "intent_b": np.round(self.intent_b, 6).tolist(),
            "delivery_w": np.round(self.delivery_w, 6).tolist(),
            "delivery_b": np.round(self.delivery_b, 6).tolist(),
        }
        path.write_text(json.dumps(body) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> IntentHead:
        path = Path(model_dir) / HEAD_FILE
        body = json.loads(path.read_text(encoding="utf-8"))
        if tuple(body.get("labels", ())) != INTENTS:
            raise ValueError(f"{path}: intent labels do not match doorstep.models.INTENTS")
        arr = {k: np.asarray(body[k], dtype=np.float64) for k in
               ("mean", "scale", "intent_w", "intent_b", "delivery_w", "delivery_b")}
        return cls(**arr, temperature=float(body.get("temperature", 1.0)),
                   use_prior=bool(body.get("use_prior", False)), patterns=tuple(body["patterns"]),
                   info=dict(body.get("info", {})))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature on a distribution: p^(1/T), renormalised (T > 1 softens)."""
    logp = np.log(np.maximum(probs, 1e-12)) / temperature
    return _softmax(logp)


def fit_head(pooled: np.ndarray, texts: Sequence[str], intents: np.ndarray, source_weights: np.ndarray,
             *, prior: np.ndarray | None = None, l2_intent: float = 0.1, l2_delivery: float = 0.01,
             power: float = 0.5, patterns: Sequence[str] = EVIDENCE) -> IntentHead:
    """Fit both heads on rows with a known intent (``intents`` >= 0); ``prior`` (the encoder's
    intent log-probabilities) makes the 10-way head a correction of the encoder's own;
    ``patterns``: the delivery head's evidence (stored in the head, which reads them at inference)."""
    keep = intents >= 0
    pooled, y, sw = pooled[keep].astype(np.float64), intents[keep], source_weights[keep]
    offset = None if prior is None else prior[keep]
    texts = [t for t, k in zip(texts, keep) if k]
    mean = pooled.mean(axis=0)
    scale = pooled.std(axis=0) + 1e-6
    x = (pooled - mean) / scale
    w_i, b_i = fit_logistic(x, y, sw * balanced_weights(y, len(INTENTS), power), len(INTENTS), l2_intent, offset=offset)
    yd = (y < N_DELIVERY).astype(int)
    xe = np.hstack([x, evidence_features(texts, patterns) * EVIDENCE_SCALE])
    w_d, b_d = fit_logistic(xe, yd, sw * balanced_weights(yd, 2, 1.0), 2, l2_delivery)
    return IntentHead(mean, scale, w_i, b_i, w_d, b_d, use_prior=prior is not None, patterns=tuple(patterns))


def fit_temperature(probs: np.ndarray, gold: np.ndarray) -> float:
    """The power that minimises the negative log-likelihood of ``gold`` (grid, 0.5..4)."""
    grid = np.exp(np.linspace(np.log(0.5), np.log(4.0), 60))
    nll = [-np.mean(np.log(np.maximum(temper(probs, t)[np.arange(len(gold)), gold], 1e-12))) for t in grid]
    return float(grid[int(np.argmin(nll))])
