"""The ``linear`` head fitted to convergence (``train.linear.solver: lbfgs``).

The Keras ``linear`` model (:func:`.models.build_model`: standardisation, the optional
frame difference, one ``Dense`` sigmoid per behaviour) is kept as it is, so it saves,
reloads and predicts like every other head; only its output layer's weights are found
differently. Instead of Adam on windows with input dropout for a few epochs, each
behaviour's weights are the minimiser of the loss the Keras model is compiled with,

    mean over annotated training frames of  -(w_pos * y * log p + (1 - y) * log(1 - p))
    + l2 * ||kernel||^2        (``train.linear.l2``; the bias is not penalised)

with ``w_pos`` the fold's positive weight (:func:`.models.positive_weights`: negatives /
positives, so the classes weigh alike), found by full-batch L-BFGS on every training frame
(scikit-learn's ``LogisticRegression``, with ``C`` and sample weights that make its
objective a multiple of this one). Those frames are held in memory, so a fit over
``train.memory_gb`` is refused with one line (:func:`check_memory`). There is no epoch: the validation frames are scored
once, and ``best_epoch`` is 1.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import keras
import numpy as np

from ..config import TrainConfig
from ..errors import ConfigError
from ..metrics import mean_pr_auc
from .inference import predict_video
from .loader import feature_statistics
from .models import build_model, positive_weights
from .windows import inference_stride

log = logging.getLogger(__name__)

#: L-BFGS iterations at most (a 2048-d problem of a few thousand frames needs a few hundred).
MAX_ITER = 2000
#: GB the training frames may take when ``train.memory_gb`` is 0 (windows always read as needed).
MIN_BUDGET_GB = 2.0


def check_memory(tcfg: TrainConfig, n_frames: int, width: int, label: str) -> None:
    """Refuse, in one line, a full-batch fit whose frames would not fit ``train.memory_gb``.

    L-BFGS holds every training frame's inputs in float64, and a copy of the annotated
    ones per behaviour: about ``2 * frames * width * 8`` bytes. Windows read as needed do
    not help it, so it is held to the budget (at least :data:`MIN_BUDGET_GB`).
    """
    need, budget = 16.0 * n_frames * width / 1e9, max(tcfg.memory_gb, MIN_BUDGET_GB)
    if need > budget:
        raise ConfigError(
            f"{label}: train.linear.solver lbfgs would hold {n_frames:,} training frames x {width} "
            f"features in memory (about {need:.1f} GB), over {budget:g} GB (train.memory_gb, at least "
            f"{MIN_BUDGET_GB:g}); use "
            "train.linear.solver: adam (trained on windows read as needed) or raise train.memory_gb")


def uses_lbfgs(kind: str, tcfg: TrainConfig) -> bool:
    """Whether head ``kind`` is fitted by :func:`fit_linear`."""
    return kind == "linear" and tcfg.linear.solver == "lbfgs"


def frame_inputs(model: keras.Model, parts: list[Any]) -> np.ndarray:
    """What the output layer sees for every frame of ``parts`` (standardised, with the
    difference to the previous frame where the model has it), one part at a time."""
    probe = keras.Model(model.input, model.get_layer("probabilities").input)
    return np.concatenate([np.asarray(probe(np.asarray(x[:], np.float32)[None], training=False))[0]
                           for x in parts]).astype(np.float64)


def logistic_weights(z: np.ndarray, y: np.ndarray, pos_weight: float, l2: float) -> tuple[np.ndarray, float, int]:
    """``(kernel column, bias, iterations)`` minimising the module's objective for one
    behaviour; ``y`` is 0/1 (annotated frames only)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    weights = np.where(y == 1, pos_weight, 1.0)
    # sklearn minimises 0.5 ||w||^2 + C sum(s * loss): (1 / (2 l2)) times ours with C = 1 / (2 l2 n)
    penalty = {"C": 1.0 / (2.0 * l2 * len(y))} if l2 > 0 else {"penalty": None}
    if y.min() == y.max():  # one class only: the bias alone, the kernel zero
        p = float(np.clip(np.average(y, weights=weights), 1e-7, 1 - 1e-7))
        return np.zeros(z.shape[1]), float(np.log(p / (1 - p))), 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        lr = LogisticRegression(solver="lbfgs", max_iter=MAX_ITER, tol=1e-6, **penalty)
        lr.fit(z, y, sample_weight=weights)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("linear head: L-BFGS stopped after %d iterations before converging (separable "
                    "frames, or train.linear.l2 = 0); its weights are the last iterate", MAX_ITER)
    return lr.coef_[0], float(lr.intercept_[0]), int(lr.n_iter_[0])


def weighted_bce(logits: np.ndarray, y: np.ndarray, pos_weight: float) -> float:
    """The mean class-weighted cross-entropy of logits against 0/1 labels (no penalty)."""
    per_frame = np.where(y == 1, pos_weight * np.logaddexp(0.0, -logits), np.logaddexp(0.0, logits))
    return float(per_frame.mean()) if len(y) else float("nan")


def fit_linear(tcfg: TrainConfig, train: list[tuple[Any, np.ndarray]], val: list[tuple[Any, np.ndarray]],
               outputs: list[int], seed: int, label: str, progress: bool,
               stream_dims: tuple[int, ...] = ()) -> Any:
    """:func:`.fit.fit_parts` for ``linear`` with ``solver: lbfgs``: a :class:`.fit.FitResult`
    whose model is the Keras linear head with converged weights."""
    from .fit import FitResult

    keras.utils.set_random_seed(seed)
    xs = [x for x, _ in train]
    ys = [y[:, outputs].astype(np.int8) for _, y in train]
    mean, std = feature_statistics(xs)
    pos_w = positive_weights(ys)
    model = build_model("linear", tcfg, xs[0].shape[1], len(outputs), mean, std ** 2, pos_w, stream_dims)
    check_memory(tcfg, sum(len(x) for x in xs), int(model.get_layer("probabilities").input.shape[-1]), label)
    t0 = time.perf_counter()
    z, y = frame_inputs(model, xs), np.concatenate(ys)
    dense = model.get_layer("probabilities")
    kernel, bias = (np.array(w) for w in dense.get_weights())
    iterations, losses = [], []
    for j in range(len(outputs)):
        keep = y[:, j] >= 0
        kernel[:, j], bias[j], n_iter = logistic_weights(z[keep], y[keep, j], float(pos_w[j]), tcfg.linear.l2)
        iterations.append(float(n_iter))
        losses.append(weighted_bce(z[keep] @ kernel[:, j] + bias[j], y[keep, j], float(pos_w[j])))
    dense.set_weights([kernel, bias])
    seconds = time.perf_counter() - t0
    history: dict[str, list[float]] = {"loss": [float(np.mean(losses))], "lbfgs_iterations": iterations}
    score = float("nan")
    if val:
        length = tcfg.window.length
        stride = inference_stride(length, tcfg.window.inference_stride)
        probs = [predict_video(model, x, length, stride) for x, _ in val]
        score = float(mean_pr_auc([yv[:, outputs] for _, yv in val], probs))
        score = score if np.isfinite(score) else -np.inf  # as early stopping scores an epoch
        history["val_pr_auc"] = [score]
    if progress:
        log.info("%s L-BFGS %s iteration(s)%s", label, "/".join(str(int(i)) for i in iterations),
                 f", val PR-AUC {score:.3f}" if val else "")
    return FitResult(model, outputs, history, 1, score, seconds, mean, std)
