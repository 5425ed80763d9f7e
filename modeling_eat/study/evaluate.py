"""The study's frozen-encoder evaluation: one pass of feature extraction over a labelled audiofolder, then a linear
probe on the CLS token and on the mean of the frame rows.

    python -m modeling_eat.study.evaluate --model_name_or_path DIR --dataset_name DATA --output_json probe.json
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from ..audio import load_audio_dataset, load_feature_extractor
from ..inference.features import iter_features, load_encoder
from ..inference.probe import linear_probe, pooled_features
from ..inference.sources import decoded_clips


POOLINGS = ("cls", "mean")


def probe_encoder(
    model_name_or_path: str,
    dataset_name: str,
    layer: int = -1,
    train_split: str = "train",
    test_split: str = "test",
    label_column_name: str = "label",
) -> dict:
    """Test accuracy of a logistic-regression probe on the frozen encoder's features, for each pooling."""
    model = load_encoder(model_name_or_path, device="cpu")
    feature_extractor = load_feature_extractor(None, model_name_or_path)
    splits = {}
    for split in (train_split, test_split):
        dataset = load_audio_dataset(dataset_name, split=split, label_column_name=label_column_name)
        clips = decoded_clips(dataset["audio"], feature_extractor.sampling_rate)
        splits[split] = (list(iter_features(model, feature_extractor, clips, layer=layer)), dataset[label_column_name])
    results = {"layer": layer}
    for pooling in POOLINGS:
        (train_clips, train_labels), (test_clips, test_labels) = splits[train_split], splits[test_split]
        probe = linear_probe(
            pooled_features(train_clips, pooling), train_labels, pooled_features(test_clips, pooling), test_labels
        )
        results[pooling] = probe["accuracy"]
        results["chance"] = probe["chance"]
    return results


def evaluate_main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Linear probe (CLS and mean pooling) of a frozen EAT encoder.")
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--dataset_name", required=True, help="an audiofolder with train/ and test/")
    parser.add_argument("--layer", type=int, default=-1, help="hidden state: 0 = embeddings, i = block i, -1 = last")
    parser.add_argument("--output_json", required=True)
    args = parser.parse_args(argv)
    results = probe_encoder(args.model_name_or_path, args.dataset_name, args.layer)
    # Written whole or not at all: the study takes the file as the sign that the probe is done.
    staging = Path(args.output_json).with_suffix(".tmp")
    staging.write_text(json.dumps(results, indent=1) + "\n")
    staging.replace(args.output_json)
    return results


if __name__ == "__main__":
    evaluate_main()
