"""Linear probe: logistic regression on frozen EAT embeddings, a quick quality measure of a checkpoint.

    python -m modeling_eat.linear_probe --model_name_or_path DIR --dataset_name DATA_DIR \
        [--train_split train --test_split test --label_column_name label --max_train_samples N]

Features are the utterance (CLS) embeddings, or the mean of the frame rows (`--pooling mean`), of `layer`; each feature
is standardized on the training set. Chance is the test accuracy of always answering the most frequent training label.
"""

import argparse
import json
import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .extract import (
    add_model_arguments,
    decoded_clips,
    iter_features,
    load_encoder,
    load_feature_extractor,
)
from .pretraining_data import load_audio_dataset


logger = logging.getLogger(__name__)


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
    classes = np.unique(train_labels)
    if len(classes) < 2:
        raise ValueError(f"the training labels hold a single class ({classes}); a probe needs at least two")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularization, max_iter=max_iter))
    probe.fit(train_features, train_labels)
    predictions = probe.predict(test_features)
    majority_label = Counter(train_labels.tolist()).most_common(1)[0][0]
    return {
        "accuracy": float(np.mean(predictions == test_labels)),
        "chance": float(np.mean(test_labels == majority_label)),
        "num_train": len(train_labels),
        "num_test": len(test_labels),
        "num_classes": len(classes),
        "predictions": predictions,
    }


def pooled_features(clips, pooling: str = "cls") -> np.ndarray:
    """`[N, D]` from `ClipFeatures`: the utterance embeddings (`cls`) or the mean of the frame rows (`mean`)."""
    if pooling == "cls":
        return np.stack([clip.utterance_embedding for clip in clips])
    if pooling == "mean":
        return np.stack([clip.frame_embeddings.mean(axis=0) for clip in clips])
    raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--dataset_name", required=True, help="local audiofolder or Hub data set")
    parser.add_argument("--dataset_config_name", default=None)
    parser.add_argument("--train_split", default="train")
    parser.add_argument("--test_split", default="test")
    parser.add_argument("--audio_column_name", default="audio")
    parser.add_argument("--label_column_name", default="label")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_test_samples", type=int, default=None)
    parser.add_argument("--pooling", default="cls", choices=["cls", "mean"])
    parser.add_argument("--regularization", type=float, default=1.0, help="inverse L2 strength C")
    parser.add_argument("--confusion_matrix", default=None, help="write the test confusion matrix to this PNG")
    parser.add_argument("--output_json", default=None, help="write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    from tqdm.auto import tqdm

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.skip_undecodable:
        raise SystemExit("--skip_undecodable is not supported here: features and labels must stay aligned")
    model = load_encoder(args.model_name_or_path, args.device, args.dtype)
    feature_extractor = load_feature_extractor(args.model_name_or_path, args.feature_extractor_name)

    def split_features(split: str, max_samples: int | None):
        dataset = load_audio_dataset(
            args.dataset_name, args.dataset_config_name, split, args.audio_column_name, args.label_column_name,
            max_samples=max_samples,
        )
        clips = decoded_clips(dataset[args.audio_column_name], feature_extractor.sampling_rate, args.num_workers)
        features = iter_features(
            model, feature_extractor, clips, args.batch_size, args.layer, args.window_seconds, args.always_window
        )
        features = list(tqdm(features, total=len(dataset), desc=f"{split} features", unit="clip"))
        return pooled_features(features, args.pooling), list(dataset[args.label_column_name])

    train_features, train_labels = split_features(args.train_split, args.max_train_samples)
    test_features, test_labels = split_features(args.test_split, args.max_test_samples)
    results = linear_probe(train_features, train_labels, test_features, test_labels, args.regularization)
    predictions = results.pop("predictions")
    results.update(model_name_or_path=args.model_name_or_path, pooling=args.pooling, layer=args.layer)
    print(
        f"linear probe ({args.pooling}, layer {args.layer}) on {args.dataset_name}: accuracy {results['accuracy']:.4f} "
        f"vs chance {results['chance']:.4f} ({results['num_classes']} classes, {results['num_train']} train / "
        f"{results['num_test']} test clips)"
    )
    if args.confusion_matrix:
        from .plotting import plot_confusion_matrix

        labels = sorted(set(train_labels) | set(test_labels))
        plot_confusion_matrix(
            test_labels, predictions, labels, args.confusion_matrix, title=f"linear probe, {args.dataset_name}"
        )
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()
