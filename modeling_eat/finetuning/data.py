"""Fine-tuning data: a Hub data set or a local audiofolder turned into `input_values` and `labels` on the fly, with
the label classes taken from the train split and, for AudioSet-style runs, weighted epochs towards rare classes.

Audio is read undecoded and decoded by the package's one loader (`modeling_eat.audio.decode_audio`), as pre-training
and extraction do, so that a file that cannot be decoded (corrupt, or shorter than one 25 ms frame) costs that clip,
not the run: its row keeps its place with silence and the label `IGNORED_LABEL`, the trainer leaves it out of the
loss and the metrics, and the run lists the skipped files at its end.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import default_data_collator

from ..audio import (
    AudioDecodingError,
    SeededEpochSampler,
    UndecodableAudioLog,
    check_label_values,
    decode_audio,
    open_dataset,
    random_crop,
    seconds_to_samples,
)
from ..feature_extraction_eat import kaldi_num_samples
from ..runtime import CommandError
from .augmentations import roll_and_gain
from .labels import LabelSpec, build_label_spec
from .recipes import FinetuningRecipe


# The label of a row whose audio could not be decoded: torch's and transformers' "ignore" index (every entry of the
# target vector for multi-label data).
IGNORED_LABEL = -100
# The batch entry listing the files of the batch that could not be decoded; the trainer takes it out.
SKIPPED_AUDIO = "skipped_audio"


def _fresh_rng() -> np.random.Generator:
    # Seeded from numpy's global state, which Trainer's set_seed and its per-worker seeding control: reproducible
    # runs, and different draws in each dataloader worker.
    return np.random.default_rng(np.random.randint(0, 2**31 - 1))


class AudioClassificationTransform:
    """`datasets.Dataset.set_transform` function: undecoded audio (`Audio(decode=False)` values) → `input_values`
    (normalised fbank) and `labels`, and `skipped_audio` (the file name, for a row that could not be decoded).

    For training it first cuts a random window of `crop_samples` from longer clips and applies roll + gain when
    asked; for evaluation the whole clip goes to the feature extractor, which crops or pads it to its `max_length`.
    A clip that cannot be decoded becomes silence labelled `IGNORED_LABEL`, warned about once per file.
    """

    def __init__(
        self,
        feature_extractor,
        label_spec: LabelSpec,
        audio_column: str = "audio",
        label_column: str = "label",
        *,
        train: bool = False,
        crop_samples: int | None = None,
        roll_augment: bool = False,
    ):
        self.feature_extractor = feature_extractor
        self.label_spec = label_spec
        self.audio_column = audio_column
        self.label_column = label_column
        self.train = train
        self.crop_samples = crop_samples
        self.roll_augment = roll_augment
        self.log_skip = UndecodableAudioLog()

    def waveform(self, audio, rng: np.random.Generator | None) -> np.ndarray:
        """The clip at the extractor's rate, mono (`decode_audio`), cropped and augmented for training."""
        waveform = decode_audio(audio, self.feature_extractor.sampling_rate)
        if rng is not None:
            if self.crop_samples is not None:
                waveform = random_crop(waveform, self.crop_samples, rng)
            if self.roll_augment:
                waveform = roll_and_gain(waveform, rng)
        return waveform

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rng = _fresh_rng() if self.train else None
        silence = np.zeros(kaldi_num_samples(1, self.feature_extractor.sampling_rate), dtype=np.float32)
        waveforms, labels, skipped = [], [], []
        for audio, value in zip(batch[self.audio_column], batch[self.label_column]):
            try:
                waveforms.append(self.waveform(audio, rng))
            except AudioDecodingError as error:
                name = audio.get("path") if isinstance(audio, dict) else None
                name = name or str(error).split(":")[0]
                self.log_skip(error, name)
                waveforms.append(silence)
                labels.append(self.ignored_label())
                skipped.append(name)
                continue
            labels.append(self.label_spec.encode(value))
            skipped.append("")
        features = self.feature_extractor(
            waveforms, sampling_rate=self.feature_extractor.sampling_rate, return_tensors="np"
        )
        return {"input_values": list(features["input_values"]), "labels": labels, SKIPPED_AUDIO: skipped}

    def ignored_label(self):
        if self.label_spec.multi_label:
            return [float(IGNORED_LABEL)] * self.label_spec.num_labels
        return IGNORED_LABEL


def decodable_rows(labels) -> np.ndarray | torch.Tensor:
    """Which rows of a batch's labels (or of an evaluation's label ids) hold a clip that could be decoded."""
    ignored = labels == IGNORED_LABEL
    return ~(ignored.all(-1) if labels.ndim > 1 else ignored)


class ClassificationCollator:
    """Stacks the transform's `input_values` and `labels` (`default_data_collator`) and lists the batch's files that
    could not be decoded under `SKIPPED_AUDIO`, which the trainer takes out before the forward pass."""

    def __call__(self, rows: list[dict]) -> dict:
        batch = default_data_collator([{"input_values": row["input_values"], "labels": row["labels"]} for row in rows])
        batch[SKIPPED_AUDIO] = [row[SKIPPED_AUDIO] for row in rows if row.get(SKIPPED_AUDIO)]
        return batch


def clip_weights_from_labels(label_indices: Sequence[Sequence[int]], num_labels: int) -> np.ndarray:
    """Per-clip sampling weights that favour rare classes: each class weighs 1 / (its clip count), a clip weighs the
    sum over its classes (the recipe behind AudioSet's `weight_train_all.csv`). Normalised to sum 1."""
    counts = np.zeros(num_labels)
    for indices in label_indices:
        counts[list(indices)] += 1
    class_weights = 1.0 / np.maximum(counts, 1.0)
    weights = np.array([class_weights[list(indices)].sum() for indices in label_indices])
    if (weights <= 0).any():
        # A clip without labels would never be drawn; give it the smallest weight a labelled clip has.
        weights[weights <= 0] = weights[weights > 0].min() if (weights > 0).any() else 1.0
    return weights / weights.sum()


def load_sample_weights(path: str | Path, num_rows: int) -> np.ndarray:
    weights = np.loadtxt(path, dtype=np.float64, ndmin=1)
    if weights.shape != (num_rows,):
        raise ValueError(
            f"{path} holds {weights.size} weights but the train split has {num_rows} rows: give one weight per line, "
            "in the order of the split's rows."
        )
    if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise ValueError(f"{path}: sample weights must be finite, non-negative, and not all zero.")
    return weights / weights.sum()


class WeightedEpochSampler(SeededEpochSampler):
    """Each epoch draws `num_samples` distinct clips with `torch.multinomial(weights, replacement=False)`, as EAT's
    AS-2M fine-tuning does (200k of ~2M clips per epoch). Drawing the whole data set only reorders it.

    Every process of a distributed run draws the same indices, and accelerate's batch sharding splits them. The
    Trainer does not call `set_epoch` on its sampler, so each pass moves on to the next epoch by itself.
    """

    def __init__(self, weights, num_samples: int | None = None, seed: int = 0):
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        available = int((self.weights > 0).sum())
        super().__init__(available if num_samples is None else min(int(num_samples), available), seed)

    def __iter__(self):
        generator = self.epoch_generator()
        indices = torch.multinomial(self.weights, self.num_samples, replacement=False, generator=generator)
        self.epoch += 1
        yield from indices.tolist()


@dataclasses.dataclass
class DataTrainingArguments:
    """Where the fine-tuning data comes from (the data flags of `python -m modeling_eat.finetune`)."""

    dataset_name: str = dataclasses.field(metadata={"help": "Hub data set id, or a local audiofolder directory."})
    dataset_config_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Configuration of the Hub data set."}
    )
    train_split_name: str = dataclasses.field(default="train", metadata={"help": "Split to train on."})
    eval_split_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Split to evaluate on (default: 'test' if present, else 'validation')."}
    )
    audio_column_name: str = dataclasses.field(default="audio", metadata={"help": "Column holding the audio."})
    label_column_name: str = dataclasses.field(
        default="label", metadata={"help": "Label column: strings, integers, ClassLabel, or lists (multi-label)."}
    )
    max_length_seconds: float | None = dataclasses.field(
        default=None,
        metadata={"help": "Training crop in seconds; also sets --target_length when neither it nor a recipe does."},
    )
    max_train_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Train on a random subset this big."}
    )
    max_eval_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Evaluate on a random subset this big."}
    )


def prepare_datasets(
    data_args: DataTrainingArguments,
    feature_extractor,
    recipe: FinetuningRecipe,
    *,
    sample_weights_file: str | None = None,
    seed: int = 42,
    cache_dir: str | None = None,
    token: str | None = None,
    need_train: bool = True,
):
    """Loads a Hub data set or a local audiofolder, builds the label classes from the train split, and returns
    `(train_dataset, eval_dataset, label_spec, sample_weights)` with transforms set (either may be None)."""
    dataset_name, train_split, eval_split = (
        data_args.dataset_name, data_args.train_split_name, data_args.eval_split_name
    )
    audio_column, label_column = data_args.audio_column_name, data_args.label_column_name
    from datasets import Audio

    options = {"cache_dir": cache_dir} if Path(dataset_name).is_dir() else {"cache_dir": cache_dir, "token": token}
    raw = open_dataset(
        dataset_name, data_args.dataset_config_name, split_option="--train_split_name", as_audiofolder=True,
        **options,
    )
    if eval_split is None:
        eval_split = next((name for name in ("test", "validation") if name in raw), None)
    for split, what in ((train_split, "--train_split_name"), (eval_split, "--eval_split_name")):
        if split is not None and split not in raw:
            raise CommandError(f"{dataset_name} has no split {split!r} (it has {sorted(raw)}): set {what}.")
    train_raw = raw[train_split]
    for column in (audio_column, label_column):
        if column not in train_raw.column_names:
            flag = "--audio_column_name" if column == audio_column else "--label_column_name"
            raise CommandError(
                f"{dataset_name} has no column {column!r} (it has {train_raw.column_names}): set {flag}."
            )

    # Decoded by the transforms (`decode_audio`), which resample and down-mix, and skip what cannot be decoded.
    undecoded_audio = Audio(decode=False)
    label_values = train_raw[label_column]
    check_label_values(label_values, label_column, dataset_name, train_split)
    label_spec = build_label_spec(train_raw.features[label_column], label_values, label_column)
    sampling_rate = feature_extractor.sampling_rate
    crop = kaldi_num_samples(recipe.target_length, sampling_rate)
    if data_args.max_length_seconds is not None:
        crop = seconds_to_samples(data_args.max_length_seconds, sampling_rate)

    train_dataset = sample_weights = None
    if need_train:
        order = np.random.default_rng(seed).permutation(len(train_raw))
        if data_args.max_train_samples is not None:
            order = order[: data_args.max_train_samples]
        train_dataset = train_raw.select(order).cast_column(audio_column, undecoded_audio)
        if recipe.weighted_sampling or sample_weights_file is not None:
            if sample_weights_file is not None:
                sample_weights = load_sample_weights(sample_weights_file, len(train_raw))[order]
            else:
                sample_weights = clip_weights_from_labels(
                    label_spec.label_indices([label_values[i] for i in order]), label_spec.num_labels
                )
        train_dataset.set_transform(
            AudioClassificationTransform(
                feature_extractor, label_spec, audio_column, label_column,
                train=True, crop_samples=crop, roll_augment=recipe.roll_augment,
            )
        )

    eval_dataset = None
    if eval_split is not None:
        eval_raw = raw[eval_split]
        check_label_values(eval_raw[label_column], label_column, dataset_name, eval_split)
        label_spec.check_covers(eval_raw[label_column], eval_split)
        if data_args.max_eval_samples is not None:
            eval_raw = eval_raw.shuffle(seed=seed).select(range(min(data_args.max_eval_samples, len(eval_raw))))
        eval_dataset = eval_raw.cast_column(audio_column, undecoded_audio)
        eval_dataset.set_transform(
            AudioClassificationTransform(feature_extractor, label_spec, audio_column, label_column, train=False)
        )
    return train_dataset, eval_dataset, label_spec, sample_weights


__all__ = [
    "IGNORED_LABEL",
    "SKIPPED_AUDIO",
    "AudioClassificationTransform",
    "ClassificationCollator",
    "DataTrainingArguments",
    "WeightedEpochSampler",
    "clip_weights_from_labels",
    "decodable_rows",
    "load_sample_weights",
    "prepare_datasets",
]
