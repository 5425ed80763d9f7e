"""Classification metrics below the workflows: fine-tuning's evaluation and the deployment's accuracy check of
quantized graphs score alike."""

import numpy as np


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro mAP as EAT reports it: sklearn's average precision per class, NaN for classes without a positive,
    then the mean over the others."""
    from sklearn.metrics import average_precision_score

    targets = np.asarray(targets) > 0.5
    per_class = np.full(targets.shape[1], np.nan)
    for index in np.flatnonzero(targets.any(axis=0)):
        per_class[index] = average_precision_score(targets[:, index], scores[:, index])
    mean = float(np.nanmean(per_class)) if not np.isnan(per_class).all() else float("nan")
    return mean, per_class


def accuracy(targets: np.ndarray, logits: np.ndarray) -> float:
    """Share of clips whose highest logit is their class."""
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(targets)))


__all__ = ["accuracy", "mean_average_precision"]
