"""The accuracy check of a quantized graph: labelled clips, the inputs a graph takes, and the comparison of two graphs
on them (each one's accuracy or mAP, and how far their logits agree).

The clips come from a data set (a local audiofolder or a Hub id) whose labels are the model's label names. A
spectrogram graph gets what fine-tuning's evaluation gives the model: `EATFeatureExtractor`'s `input_values`, cropped
or padded to its `max_length`. A waveform graph gets each clip whole, as a deployment would hand it over (the graph
crops nothing).
"""

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..audio import decode_audio, load_audio_dataset
from ..metrics import accuracy, mean_average_precision
from ..runtime import CommandError


logger = logging.getLogger(__name__)

EVAL_SPLITS = ("test", "validation")
# Spectrogram inputs per graph call; a waveform graph takes one clip a call (clips differ in length).
BATCH_SIZE = 16


@dataclasses.dataclass
class LabelledClips:
    """Decoded clips and their targets: class ids `(clips,)`, or multi-hot `(clips, labels)` for multi-label models."""

    waveforms: list[np.ndarray]
    targets: np.ndarray
    multi_label: bool
    source: dict


def _label_names(feature, values: Sequence, multi_label: bool) -> list:
    """Each row's label name(s): ClassLabel ids through its names, other values as strings."""
    item_feature = getattr(feature, "feature", None) if multi_label else feature
    to_name = item_feature.int2str if hasattr(item_feature, "int2str") else str
    if multi_label:
        return [[to_name(item) for item in value] for value in values]
    return [to_name(value) for value in values]


@dataclasses.dataclass
class ClipSource:
    """Where clips come from: a local audiofolder (or a folder of audio files) or a Hub data set, one split of it,
    its audio and label columns, and at most `max_samples` clips (a seeded random subset)."""

    dataset_name: str
    dataset_config_name: str | None = None
    split: str | None = None
    audio_column: str = "audio"
    label_column: str = "label"
    max_samples: int | None = None

    def load(self, labelled: bool, seed: int = 0):
        """The split's audio (and label) column, the subset drawn, and a record of it for export.json."""
        split = self.split or (eval_split_of(self.dataset_name, self.dataset_config_name) if labelled else "train")
        dataset = load_audio_dataset(
            self.dataset_name, self.dataset_config_name, split, self.audio_column,
            self.label_column if labelled else None,
        )
        subset = self.max_samples is not None and self.max_samples < len(dataset)
        if subset:
            dataset = dataset.shuffle(seed=seed).select(range(self.max_samples))
        record = {
            # A local folder by its name only: export.json travels with the graph, this machine's paths do not.
            "dataset": Path(self.dataset_name).name if Path(self.dataset_name).exists() else self.dataset_name,
            "config": self.dataset_config_name,
            "split": split,
            "num_clips": len(dataset),
            "subset_seed": seed if subset else None,
        }
        return dataset, record


def eval_split_of(dataset_name: str, dataset_config_name: str | None = None) -> str:
    """The split a check scores on: 'test' if the data set has one, else 'validation'."""
    from datasets import get_dataset_split_names

    splits = get_dataset_split_names(dataset_name, dataset_config_name)
    split = next((name for name in EVAL_SPLITS if name in splits), None)
    if split is None:
        raise CommandError(f"{dataset_name} has neither a 'test' nor a 'validation' split (it has {splits}): pass the "
                         "split to score on (--eval_split).")
    return split


def load_labelled_clips(
    source: ClipSource, label2id: dict[str, int], multi_label: bool, sampling_rate: int = 16000, seed: int = 0
) -> LabelledClips:
    """Clips of `source` (split by default `eval_split_of`) with their labels mapped to the model's ids through the
    label names. Raises CommandError for labels the model does not know, or a single/multi-label mismatch."""
    dataset, record = source.load(labelled=True, seed=seed)
    column, name = source.label_column, source.dataset_name
    feature = dataset.features[column]
    column_is_list = getattr(feature, "feature", None) is not None
    if column_is_list != multi_label:
        raise CommandError(
            f"The label column {column!r} of {name} holds {'lists' if column_is_list else 'one label'} per clip, but "
            f"the model is {'multi' if multi_label else 'single'}-label: pass the column it was trained on "
            "(--label_column_name)."
        )
    names = _label_names(feature, dataset[column], multi_label)
    known = set(label2id)
    unknown = sorted({label for row in names for label in (row if multi_label else [row])} - known)
    if unknown:
        raise CommandError(
            f"{name} ({record['split']}) has labels the model does not know: {unknown[:10]}"
            f"{' ...' if len(unknown) > 10 else ''}; the model's labels are {sorted(known)[:10]}"
            f"{' ...' if len(known) > 10 else ''}. Score it on data labelled with the model's classes."
        )
    if multi_label:
        targets = np.zeros((len(names), len(label2id)), dtype=np.float32)
        for row, row_names in enumerate(names):
            targets[row, [label2id[label] for label in row_names]] = 1.0
    else:
        targets = np.array([label2id[label] for label in names], dtype=np.int64)
    waveforms = [decode_audio(audio, sampling_rate) for audio in dataset[source.audio_column]]
    return LabelledClips(waveforms, targets, multi_label, record)


def load_unlabelled_clips(source: ClipSource, sampling_rate: int = 16000, seed: int = 0):
    """Decoded clips of `source` (split by default 'train') and a record of them: static quantization's calibration
    audio."""
    dataset, record = source.load(labelled=False, seed=seed)
    return [decode_audio(audio, sampling_rate) for audio in dataset[source.audio_column]], record


def graph_inputs(
    waveforms: Sequence[np.ndarray], feature_extractor, with_feature_extractor: bool, batch_size: int = BATCH_SIZE
) -> Iterator[np.ndarray]:
    """The arrays a graph is run on for these clips, in order: waveforms one by one, or batches of `input_values`."""
    if with_feature_extractor:
        for waveform in waveforms:
            yield np.asarray(waveform, dtype=np.float32)[None]
        return
    for start in range(0, len(waveforms), batch_size):
        features = feature_extractor(
            list(waveforms[start : start + batch_size]),
            sampling_rate=feature_extractor.sampling_rate,
            return_tensors="np",
        )
        yield features["input_values"].astype(np.float32)


def logits_of(run, inputs: Iterator[np.ndarray]) -> np.ndarray:
    return np.concatenate([run(batch)[0] for batch in inputs])


def score(logits: np.ndarray, clips: LabelledClips) -> tuple[str, float]:
    """("accuracy", share) for single-label models, ("map", macro mAP) for multi-label ones."""
    if clips.multi_label:
        return "map", mean_average_precision(clips.targets, logits)[0]
    return "accuracy", accuracy(clips.targets, logits)


def compare_logits(reference: np.ndarray, candidate: np.ndarray, clips: LabelledClips) -> dict:
    """Both graphs' metric on the clips, the drop in points (percentage points of accuracy or mAP), and the logits'
    agreement: the share of clips with the same top class, the largest and the mean |difference|."""
    metric, reference_score = score(reference, clips)
    _, candidate_score = score(candidate, clips)
    difference = np.abs(candidate - reference)
    return {
        "metric": metric,
        "float32": round(reference_score, 6),
        "int8": round(candidate_score, 6),
        "drop_points": round(100 * (reference_score - candidate_score), 4),
        "top1_agreement": round(float(np.mean(reference.argmax(-1) == candidate.argmax(-1))), 6),
        "max_abs_logit_difference": float(difference.max()),
        "mean_abs_logit_difference": float(difference.mean()),
        "logit_range": float(reference.max() - reference.min()),
        **clips.source,
    }


__all__ = [
    "ClipSource",
    "LabelledClips",
    "compare_logits",
    "eval_split_of",
    "graph_inputs",
    "load_labelled_clips",
    "load_unlabelled_clips",
    "logits_of",
    "score",
]
