"""Linear probe: logistic regression on frozen EAT embeddings, a quick quality measure of a checkpoint.

Features are the utterance (CLS) embeddings, the mean of the frame rows (`pooling="mean"`) or both side by side
(`"cls+mean"`); each feature is standardized on the training set. Chance is the test accuracy of always answering
the most frequent training label.
"""

from collections import Counter
from collections.abc import Sequence

import numpy as np


def check_probe_labels(train_labels) -> None:
    """A probe separates classes: training labels of one class (or none) give it nothing to fit."""
    classes = np.unique(np.asarray(train_labels))
    if len(classes) < 2:
        raise ValueError(
            f"the training labels hold {len(classes)} class{'' if len(classes) == 1 else 'es'} "
            f"({', '.join(map(str, classes))}); a probe needs at least two: label clips of two classes or more"
        )


def linear_probe(
    train_features: np.ndarray,
    train_labels: Sequence,
    test_features: np.ndarray,
    test_labels: Sequence,
    regularization: float = 1.0,
    max_iter: int = 2000,
) -> dict:
    """Fits `StandardScaler -> LogisticRegression(C=regularization)` on train, scores on test.

    Returns `accuracy`, `chance` (majority-class rate), `num_train`, `num_test`, `num_classes` and the test
    `predictions`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_features, test_features = np.asarray(train_features), np.asarray(test_features)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"features must be [num_clips, dim] with the same dim for train and test, got {train_features.shape} and "
            f"{test_features.shape}"
        )
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise ValueError(
            f"got {len(train_features)} train features for {len(train_labels)} labels and {len(test_features)} test "
            f"features for {len(test_labels)} labels"
        )
    check_probe_labels(train_labels)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularization, max_iter=max_iter))
    probe.fit(train_features, train_labels)
    predictions = probe.predict(test_features)
    majority_label = Counter(train_labels.tolist()).most_common(1)[0][0]
    return {
        "accuracy": float(np.mean(predictions == test_labels)),
        "chance": float(np.mean(test_labels == majority_label)),
        "num_train": len(train_labels),
        "num_test": len(test_labels),
        "num_classes": len(np.unique(train_labels)),
        "predictions": predictions,
    }


# A clip's embedding: its CLS token, the mean of its frame rows, or both side by side in that order.
POOLINGS = ("cls", "mean", "cls+mean")


def _pooling_parts(pooling: str) -> list[str]:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return pooling.split("+")


def _pooled(clip, pooling: str) -> np.ndarray:
    parts = {"cls": clip.utterance_embedding, "mean": clip.frame_embeddings.mean(axis=0)}
    return np.concatenate([parts[part] for part in _pooling_parts(pooling)])


def pooled_features(clips, pooling: str = "cls") -> np.ndarray:
    """`[N, D']` from `ClipFeatures`: the utterance embeddings (`cls`), the mean of the frame rows (`mean`), or the
    two concatenated (`cls+mean`, `D' = 2D`)."""
    _pooling_parts(pooling)
    return np.stack([_pooled(clip, pooling) for clip in clips])


def pooled_size(pooling: str, hidden_size: int) -> int:
    """The width of `pooled_features(..., pooling)` for an encoder `hidden_size` wide."""
    return hidden_size * len(_pooling_parts(pooling))


__all__ = ["POOLINGS", "linear_probe", "pooled_features", "pooled_size"]
