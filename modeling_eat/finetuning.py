"""Fine-tuning EAT for audio classification: the official recipes, their augmentations, layer-wise learning-rate
decay, data transforms, weighted sampling, losses and metrics (EAT.md §4). Used by `training/finetune.py`.

Not shipped to the Hub: this module may import datasets and scikit-learn, and no shipped file imports it.

Where each augmentation runs, as in the official code: roll + gain on the raw waveform (in the dataset transform);
then, on the normalised fbank of a training batch, SPC-2's noise + time shift, batch mixup, and SpecAugment last
(in `EATFinetuningTrainer.compute_loss`, only while the model is in training mode, so evaluation sees clean clips).
"""

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from .feature_extraction_eat import PRESETS as FEATURE_PRESETS
from .feature_extraction_eat import kaldi_num_frames
from .pretraining_data import random_crop
from .pretraining_loop import takes_weight_decay


logger = logging.getLogger(__name__)

AUDIOSET_STATS = FEATURE_PRESETS["audioset"]


# ------------------------------------------------------------------------------------------------------------------
# Recipes
# ------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FinetuningRecipe:
    """Every setting of a fine-tuning run that is not a plain `TrainingArguments` field.

    In a recipe, `None` means "decide from the run": `target_length` from `--max_length_seconds` (else 1024 frames),
    `norm_mean`/`norm_std` from the base checkpoint's feature extractor (else AudioSet's), `layer_decay` 0.65 for a
    pre-trained encoder and 1.0 (off) from scratch, where decaying the lower blocks' rate would only starve them.
    `training` holds the `TrainingArguments` defaults the recipe brings; flags given on the command line win.
    """

    target_length: int | None = None
    norm_mean: float | None = None
    norm_std: float | None = None
    mixup_alpha: float = 0.0
    mixup_prob: float = 0.9
    # Single-label targets under mixup: "bce" (SPC-2 in the official code) or "soft_ce" (its branch for the others).
    mixup_loss: str = "bce"
    specaug_ratio: float = 0.2
    roll_augment: bool = True
    noise_augment: bool = False
    label_smoothing: float = 0.0
    layer_decay: float | None = None
    drop_path_rate: float = 0.1
    weighted_sampling: bool = False
    samples_per_epoch: int | None = None
    training: dict = dataclasses.field(default_factory=dict)


def _official_training(learning_rate: float, batch_size: int, max_steps: int, warmup_steps: int, **extra) -> dict:
    # Adam (0.9, 0.95), weight decay 0.05, cosine down to 1e-6 (EAT.md §4, Optimization).
    return {
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "max_steps": max_steps,
        "warmup_steps": warmup_steps,
        "weight_decay": 0.05,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr": 1e-6},
        **extra,
    }


_AUDIOSET_AUGMENT = {"mixup_alpha": 0.8, "specaug_ratio": 0.2, "roll_augment": True, "label_smoothing": 0.0}

RECIPES = {
    "as20k": FinetuningRecipe(
        target_length=1024, norm_mean=-4.268, norm_std=4.569, **_AUDIOSET_AUGMENT, layer_decay=0.65,
        training=_official_training(5e-5, 48, 40_000, 4_000),
    ),
    "as2m": FinetuningRecipe(
        target_length=1024, norm_mean=-4.268, norm_std=4.569, **_AUDIOSET_AUGMENT, layer_decay=0.65,
        weighted_sampling=True, samples_per_epoch=200_000,
        training=_official_training(5e-5, 96, 300_000, 30_000),
    ),
    "esc50": FinetuningRecipe(
        target_length=512, norm_mean=-6.627, norm_std=5.359, mixup_alpha=0.0, specaug_ratio=0.4, roll_augment=True,
        label_smoothing=0.1, layer_decay=0.65,
        training=_official_training(5e-5, 48, 4_000, 400),
    ),
    "spc2": FinetuningRecipe(
        target_length=128, norm_mean=-6.846, norm_std=5.565, mixup_alpha=0.8, mixup_loss="bce", specaug_ratio=0.2,
        roll_augment=True, noise_augment=True, label_smoothing=0.1, layer_decay=0.65,
        training=_official_training(2e-4, 256, 40_000, 4_000, seed=42),
    ),
}

# No --recipe: settings for a small custom data set. The official augmentations minus mixup (which needs many clips
# per class to pay off), mild label smoothing, and the official optimizer shape; learning rate, batch size and
# length of training stay at the TrainingArguments values the user gives (or its defaults, lr 5e-5, 3 epochs).
DEFAULT_RECIPE = FinetuningRecipe(
    label_smoothing=0.1,
    training={
        "weight_decay": 0.05,
        "adam_beta2": 0.95,
        "warmup_steps": 0.1,
        "lr_scheduler_type": "cosine",
    },
)

RECIPE_FIELDS = tuple(field.name for field in dataclasses.fields(FinetuningRecipe) if field.name != "training")


def get_recipe(name: str | None) -> FinetuningRecipe:
    if name is None or name == "none":
        return DEFAULT_RECIPE
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}: choose one of {sorted(RECIPES)}, or leave --recipe out.")
    return RECIPES[name]


@dataclasses.dataclass
class FinetuningArguments:
    """Recipe and augmentation flags of `training/finetune.py`; a flag left unset takes the recipe's value."""

    recipe: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Official settings (EAT.md §4): as2m, as20k, esc50 or spc2. Unset: small-data defaults.",
                  "choices": list(RECIPES)},
    )
    target_length: int | None = dataclasses.field(
        default=None, metadata={"help": "Frames per clip (multiple of 16); 100 frames per second."}
    )
    norm_mean: float | None = dataclasses.field(default=None, metadata={"help": "Fbank mean for normalisation."})
    norm_std: float | None = dataclasses.field(default=None, metadata={"help": "Fbank std for normalisation."})
    mixup_alpha: float | None = dataclasses.field(default=None, metadata={"help": "Beta(a, a) of mixup; 0 = off."})
    mixup_prob: float | None = dataclasses.field(default=None, metadata={"help": "Share of batches mixed."})
    mixup_loss: str | None = dataclasses.field(
        default=None, metadata={"help": "Loss for single-label data under mixup.", "choices": ["bce", "soft_ce"]}
    )
    specaug_ratio: float | None = dataclasses.field(
        default=None, metadata={"help": "SpecAugment: widest mask = ratio x mel bins and ratio x frames; 0 = off."}
    )
    roll_augment: bool | None = dataclasses.field(
        default=None, metadata={"help": "Circular shift and Beta(10,10)+0.5 gain of the waveform."}
    )
    noise_augment: bool | None = dataclasses.field(
        default=None, metadata={"help": "SPC-2's fbank noise and +-10 frame shift."}
    )
    label_smoothing: float | None = dataclasses.field(default=None, metadata={"help": "Cross-entropy smoothing."})
    layer_decay: float | None = dataclasses.field(
        default=None, metadata={"help": "Block i of L trains at lr * layer_decay**(L - i); 1 = off."}
    )
    drop_path_rate: float | None = dataclasses.field(default=None, metadata={"help": "Stochastic depth (max)."})
    weighted_sampling: bool | None = dataclasses.field(
        default=None,
        metadata={"help": "Draw each epoch's clips without replacement, weighted towards rare classes (AS-2M)."},
    )
    sample_weights_file: str | None = dataclasses.field(
        default=None,
        metadata={"help": "One weight per line for the rows of the train split, instead of label frequencies "
                          "(turns weighted sampling on)."},
    )
    samples_per_epoch: int | None = dataclasses.field(
        default=None, metadata={"help": "Clips drawn per epoch by weighted sampling (default: the whole split)."}
    )


def resolve_recipe(
    args: FinetuningArguments,
    *,
    pretrained: bool,
    base_feature_extractor=None,
    max_length_seconds: float | None = None,
    sampling_rate: int = 16000,
) -> FinetuningRecipe:
    """The recipe's values with the flags that were given on top, every `None` decided, and all checked."""
    recipe = get_recipe(args.recipe)
    values = {name: getattr(recipe, name) for name in RECIPE_FIELDS}
    values.update({name: getattr(args, name) for name in RECIPE_FIELDS if getattr(args, name, None) is not None})

    if values["target_length"] is None:
        if max_length_seconds is not None:
            frames = kaldi_num_frames(int(round(max_length_seconds * sampling_rate)), sampling_rate)
            values["target_length"] = max(16, 16 * math.ceil(frames / 16))
        else:
            values["target_length"] = 1024
    for name in ("mean", "std"):
        if values[f"norm_{name}"] is None:
            from_checkpoint = getattr(base_feature_extractor, name, None)
            values[f"norm_{name}"] = from_checkpoint if from_checkpoint is not None else AUDIOSET_STATS[name]
    if values["layer_decay"] is None:
        values["layer_decay"] = 0.65 if pretrained else 1.0
    resolved = FinetuningRecipe(**values, training=dict(recipe.training))
    check_recipe(resolved)
    return resolved


def check_recipe(recipe: FinetuningRecipe) -> None:
    checks = [
        (recipe.target_length > 0 and recipe.target_length % 16 == 0,
         f"--target_length must be a positive multiple of the patch size 16, got {recipe.target_length}"),
        (recipe.norm_std > 0, f"--norm_std must be positive, got {recipe.norm_std}"),
        (recipe.mixup_alpha >= 0, f"--mixup_alpha must be >= 0 (0 turns mixup off), got {recipe.mixup_alpha}"),
        (0.0 <= recipe.mixup_prob <= 1.0, f"--mixup_prob must lie in [0, 1], got {recipe.mixup_prob}"),
        (recipe.mixup_loss in ("bce", "soft_ce"), f"--mixup_loss must be 'bce' or 'soft_ce', got {recipe.mixup_loss}"),
        (0.0 <= recipe.specaug_ratio < 1.0, f"--specaug_ratio must lie in [0, 1), got {recipe.specaug_ratio}"),
        (0.0 <= recipe.label_smoothing < 1.0, f"--label_smoothing must lie in [0, 1), got {recipe.label_smoothing}"),
        (0.0 < recipe.layer_decay <= 1.0, f"--layer_decay must lie in (0, 1] (1 turns it off), got {recipe.layer_decay}"),
        (0.0 <= recipe.drop_path_rate < 1.0, f"--drop_path_rate must lie in [0, 1), got {recipe.drop_path_rate}"),
        (recipe.samples_per_epoch is None or recipe.samples_per_epoch > 0,
         f"--samples_per_epoch must be positive, got {recipe.samples_per_epoch}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def crop_samples_for(target_length: int, sampling_rate: int = 16000) -> int:
    """Samples that give exactly `target_length` Kaldi frames (25 ms windows every 10 ms)."""
    return (target_length - 1) * sampling_rate // 100 + sampling_rate * 25 // 1000


# ------------------------------------------------------------------------------------------------------------------
# Augmentations
# ------------------------------------------------------------------------------------------------------------------


def roll_and_gain(waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """EAT's `roll_aug`: a circular shift by a random offset in [0, len), times a gain of Beta(10, 10) + 0.5."""
    shifted = np.roll(waveform, int(rng.integers(0, len(waveform))))
    return (shifted * (rng.beta(10.0, 10.0) + 0.5)).astype(waveform.dtype, copy=False)


def random_bands(batch_size: int, size: int, max_width: float, rng: np.random.Generator, device=None) -> torch.Tensor:
    """One contiguous band per row, True inside: width uniform in [0, max_width), start uniform where it fits."""
    widths = np.floor(rng.random(batch_size) * max_width).astype(np.int64)
    starts = np.floor(rng.random(batch_size) * (size - widths + 1)).astype(np.int64)
    positions = torch.arange(size, device=device)
    starts, ends = torch.as_tensor(starts, device=device), torch.as_tensor(starts + widths, device=device)
    return (positions >= starts[:, None]) & (positions < ends[:, None])


def spec_augment(input_values: torch.Tensor, mask_ratio: float, rng: np.random.Generator) -> torch.Tensor:
    """SpecAugment as EAT fine-tunes with it: one frequency band and one time band per clip, drawn independently
    per clip, set to 0 (the normalised mean). Widest bands: `mask_ratio * num_mel_bins` bins (EAT's freqm =
    128 * ratio) and `mask_ratio * num_frames` frames (timem = target_length * ratio). `(batch, frames, mel)`."""
    if mask_ratio <= 0:
        return input_values
    batch_size, num_frames, num_mel_bins = input_values.shape
    freq_bands = random_bands(batch_size, num_mel_bins, mask_ratio * num_mel_bins, rng, input_values.device)
    time_bands = random_bands(batch_size, num_frames, mask_ratio * num_frames, rng, input_values.device)
    return input_values.masked_fill(freq_bands[:, None, :] | time_bands[:, :, None], 0.0)


def mixup(
    input_values: torch.Tensor, targets: torch.Tensor, alpha: float, prob: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Batch mixup as in EAT (timm's `mode="batch"`): with probability `prob`, every clip is mixed with the clip at
    the mirrored batch position using one `lam ~ Beta(alpha, alpha)`, and so are the float targets. Returns
    `(inputs, targets, lam)`; `lam == 1` when the batch was left alone."""
    if alpha <= 0 or rng.random() >= prob:
        return input_values, targets, 1.0
    lam = float(rng.beta(alpha, alpha))
    mixed_inputs = lam * input_values + (1.0 - lam) * input_values.flip(0)
    mixed_targets = lam * targets + (1.0 - lam) * targets.flip(0)
    return mixed_inputs, mixed_targets, lam


def noise_and_shift(input_values: torch.Tensor, rng: np.random.Generator, max_shift: int = 10) -> torch.Tensor:
    """SPC-2's fbank augmentation, per clip: add uniform noise scaled by U(0, 1) / 10, then roll the frames by an
    offset in [-max_shift, max_shift)."""
    batch_size = input_values.shape[0]
    noise = torch.as_tensor(rng.random(input_values.shape), dtype=input_values.dtype, device=input_values.device)
    scale = torch.as_tensor(rng.random(batch_size) / 10, dtype=input_values.dtype, device=input_values.device)
    noisy = input_values + noise * scale[:, None, None]
    shifts = rng.integers(-max_shift, max_shift, size=batch_size)
    return torch.stack([torch.roll(clip, int(shift), dims=0) for clip, shift in zip(noisy, shifts)])


# ------------------------------------------------------------------------------------------------------------------
# Optimizer: layer-wise learning-rate decay
# ------------------------------------------------------------------------------------------------------------------


def layer_decay_parameter_groups(
    model: nn.Module, learning_rate: float, weight_decay: float, layer_decay: float
) -> list[dict[str, Any]]:
    """Optimizer groups of EAT's fine-tuning: block i (0-based) of L trains at `learning_rate * layer_decay**(L-i)`,
    everything outside the blocks (patch embedding, CLS, embedding norm, fc_norm, classifier) at `learning_rate`;
    1-D parameters and biases get no weight decay. Each group carries `lr_scale` and the parameter `names`.

    The learning-rate schedulers of transformers scale each group's own initial `lr`, so the ratios hold all along.
    """
    blocks = model.base_model.layers
    num_blocks = len(blocks)
    block_of = {id(param): index for index, block in enumerate(blocks) for param in block.parameters()}
    groups: dict[tuple, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        block = block_of.get(id(param))
        scale = layer_decay ** (num_blocks - block) if block is not None else 1.0
        decay = weight_decay if takes_weight_decay(name, param) else 0.0
        group = groups.setdefault(
            (block, decay),
            {"params": [], "names": [], "lr": learning_rate * scale, "lr_scale": scale, "weight_decay": decay},
        )
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


# ------------------------------------------------------------------------------------------------------------------
# Labels
# ------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LabelSpec:
    """The classes of a label column and how its values become targets.

    Single-label values become class indices; multi-label values (lists) become multi-hot float vectors.
    """

    names: list[str]
    multi_label: bool
    # Column value -> class index, for the column's own values (names for strings, integers for ints, ClassLabel
    # indices for ClassLabel columns).
    index_of: dict[Any, int]

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.names)}

    @property
    def problem_type(self) -> str:
        return "multi_label_classification" if self.multi_label else "single_label_classification"

    def encode(self, value) -> int | list[float]:
        if not self.multi_label:
            return self.index_of[value]
        target = [0.0] * self.num_labels
        for item in value:
            target[self.index_of[item]] = 1.0
        return target

    def label_indices(self, values: Sequence) -> list[list[int]]:
        """The class indices of each row (one per row for single-label data)."""
        if self.multi_label:
            return [[self.index_of[item] for item in value] for value in values]
        return [[self.index_of[value]] for value in values]

    def check_covers(self, values: Sequence, split: str) -> None:
        items = (item for value in values for item in value) if self.multi_label else iter(values)
        unknown = sorted({str(item) for item in items if item not in self.index_of})
        if unknown:
            raise ValueError(
                f"The {split} split has labels the train split lacks: {unknown[:10]}"
                f"{' ...' if len(unknown) > 10 else ''}. The classifier only knows the train split's classes: add "
                "examples of them to the train split, or drop these rows."
            )


def _inner_feature(feature):
    # datasets' List / LargeList / Sequence all keep their item type in `.feature`.
    return getattr(feature, "feature", None) if not isinstance(feature, dict) else None


def build_label_spec(feature, values: Sequence, column: str = "label") -> LabelSpec:
    """Classes of a label column from its datasets feature and values: ClassLabel names, or the sorted unique
    strings or integers; a list column (of any of those) is multi-label."""
    from datasets import ClassLabel

    inner = _inner_feature(feature)
    multi_label = inner is not None
    item_feature = inner if multi_label else feature
    if isinstance(item_feature, ClassLabel):
        return LabelSpec(list(item_feature.names), multi_label, {i: i for i in range(item_feature.num_classes)})

    items = [item for value in values for item in value] if multi_label else list(values)
    if any(item is None for item in items):
        raise ValueError(f"The label column {column!r} has missing (None) values: drop or fill those rows first.")
    kinds = {type(item) for item in items}
    if not items:
        raise ValueError(f"The label column {column!r} is empty.")
    if kinds <= {int, np.int64, np.int32, bool} or kinds <= {str}:
        unique = sorted(set(items))
    else:
        raise ValueError(
            f"The label column {column!r} holds {sorted(k.__name__ for k in kinds)} values; labels must be strings, "
            "integers, a ClassLabel, or lists of those (multi-label). Pick the right column with --label_column_name."
        )
    return LabelSpec([str(item) for item in unique], multi_label, {item: i for i, item in enumerate(unique)})


# ------------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------------


def _fresh_rng() -> np.random.Generator:
    # Seeded from numpy's global state, which Trainer's set_seed and its per-worker seeding control: reproducible
    # runs, and different draws in each dataloader worker.
    return np.random.default_rng(np.random.randint(0, 2**31 - 1))


class AudioClassificationTransform:
    """`datasets.Dataset.set_transform` function: decoded audio → `input_values` (normalised fbank) and `labels`.

    For training it first cuts a random window of `crop_samples` from longer clips and applies roll + gain when
    asked; for evaluation the whole clip goes to the feature extractor, which crops or pads it to its `max_length`.
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

    def waveform(self, audio, rng: np.random.Generator | None) -> np.ndarray:
        waveform = np.asarray(audio["array"], dtype=np.float32)
        if audio["sampling_rate"] != self.feature_extractor.sampling_rate:
            raise ValueError(
                f"A clip of {self.audio_column!r} is at {audio['sampling_rate']} Hz, not "
                f"{self.feature_extractor.sampling_rate} Hz: cast the column with "
                f"Audio(sampling_rate={self.feature_extractor.sampling_rate}) first."
            )
        if waveform.ndim != 1:
            raise ValueError(f"A clip of {self.audio_column!r} has shape {waveform.shape}; cast it to mono.")
        if rng is not None:
            if self.crop_samples is not None:
                waveform = random_crop(waveform, self.crop_samples, rng)
            if self.roll_augment:
                waveform = roll_and_gain(waveform, rng)
        return waveform

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rng = _fresh_rng() if self.train else None
        waveforms = [self.waveform(audio, rng) for audio in batch[self.audio_column]]
        features = self.feature_extractor(
            waveforms, sampling_rate=self.feature_extractor.sampling_rate, return_tensors="np"
        )
        return {
            "input_values": list(features["input_values"]),
            "labels": [self.label_spec.encode(value) for value in batch[self.label_column]],
        }


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


class WeightedEpochSampler(torch.utils.data.Sampler):
    """Each epoch draws `num_samples` distinct clips with `torch.multinomial(weights, replacement=False)`, as EAT's
    AS-2M fine-tuning does (200k of ~2M clips per epoch). Drawing the whole data set only reorders it.

    The draw depends on `seed` and the epoch only, so every process of a distributed run draws the same indices and
    accelerate's batch sharding splits them.
    """

    def __init__(self, weights, num_samples: int | None = None, seed: int = 0):
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        available = int((self.weights > 0).sum())
        self.num_samples = available if num_samples is None else min(int(num_samples), available)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        indices = torch.multinomial(self.weights, self.num_samples, replacement=False, generator=generator)
        self.epoch += 1
        yield from indices.tolist()


def prepare_datasets(
    dataset_name: str,
    *,
    feature_extractor,
    recipe: FinetuningRecipe,
    dataset_config_name: str | None = None,
    train_split: str = "train",
    eval_split: str | None = None,
    audio_column: str = "audio",
    label_column: str = "label",
    max_length_seconds: float | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    sample_weights_file: str | None = None,
    seed: int = 42,
    cache_dir: str | None = None,
    token: str | None = None,
    need_train: bool = True,
):
    """Loads a Hub data set or a local audiofolder, builds the label classes from the train split, and returns
    `(train_dataset, eval_dataset, label_spec, sample_weights)` with transforms set (either may be None)."""
    from datasets import Audio, load_dataset

    if Path(dataset_name).is_dir():
        raw = load_dataset("audiofolder", data_dir=dataset_name, cache_dir=cache_dir)
    else:
        raw = load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, token=token)
    if eval_split is None:
        eval_split = next((name for name in ("test", "validation") if name in raw), None)
    for split, what in ((train_split, "--train_split_name"), (eval_split, "--eval_split_name")):
        if split is not None and split not in raw:
            raise ValueError(f"{dataset_name} has no split {split!r} (it has {sorted(raw)}): set {what}.")
    train_raw = raw[train_split]
    for column in (audio_column, label_column):
        if column not in train_raw.column_names:
            flag = "--audio_column_name" if column == audio_column else "--label_column_name"
            raise ValueError(
                f"{dataset_name} has no column {column!r} (it has {train_raw.column_names}): set {flag}."
            )

    # datasets decodes, resamples and down-mixes to mono.
    mono_audio = Audio(sampling_rate=feature_extractor.sampling_rate, num_channels=1)
    label_values = train_raw[label_column]
    label_spec = build_label_spec(train_raw.features[label_column], label_values, label_column)
    sampling_rate = feature_extractor.sampling_rate
    crop = crop_samples_for(recipe.target_length, sampling_rate)
    if max_length_seconds is not None:
        crop = int(round(max_length_seconds * sampling_rate))

    train_dataset = sample_weights = None
    if need_train:
        order = np.random.default_rng(seed).permutation(len(train_raw))
        if max_train_samples is not None:
            order = order[:max_train_samples]
        train_dataset = train_raw.select(order).cast_column(audio_column, mono_audio)
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
        label_spec.check_covers(eval_raw[label_column], eval_split)
        if max_eval_samples is not None:
            eval_raw = eval_raw.shuffle(seed=seed).select(range(min(max_eval_samples, len(eval_raw))))
        eval_dataset = eval_raw.cast_column(audio_column, mono_audio)
        eval_dataset.set_transform(
            AudioClassificationTransform(feature_extractor, label_spec, audio_column, label_column, train=False)
        )
    return train_dataset, eval_dataset, label_spec, sample_weights


# ------------------------------------------------------------------------------------------------------------------
# Loss
# ------------------------------------------------------------------------------------------------------------------


def loss_kind(recipe: FinetuningRecipe, multi_label: bool) -> str:
    """Which loss the official code uses: BCE for multi-label data; for single-label data cross-entropy (with label
    smoothing) without mixup, and under mixup `recipe.mixup_loss` (BCE for SPC-2)."""
    if multi_label:
        return "bce"
    return recipe.mixup_loss if recipe.mixup_alpha > 0 else "ce"


def classification_loss(
    logits: torch.Tensor, targets: torch.Tensor, kind: str, label_smoothing: float = 0.0
) -> torch.Tensor:
    """`targets` are class indices or float (soft, multi-hot) targets of shape `(batch, num_labels)`.

    BCE is summed over the classes and averaged over the clips, as the official SPC-2 loss (its AudioSet loss divides
    by the number of positive labels instead: a constant factor Adam mostly absorbs, but logged values differ).
    """
    logits = logits.float()
    if targets.dtype in (torch.long, torch.int):
        if kind == "ce":
            return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        targets = F.one_hot(targets, logits.shape[-1])
    targets = targets.float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1).mean()
    if kind == "soft_ce":
        return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    if kind == "ce":
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    raise ValueError(f"Unknown loss {kind!r}: 'ce', 'soft_ce' or 'bce'.")


# ------------------------------------------------------------------------------------------------------------------
# Trainer
# ------------------------------------------------------------------------------------------------------------------


class EATFinetuningTrainer(Trainer):
    """Trainer with EAT's fine-tuning: layer-decay optimizer groups (by overriding `create_optimizer`, so `--optim`
    and the scheduler still work), the batch augmentations and loss (by overriding `compute_loss`) and, for weighted
    sampling, a `WeightedEpochSampler` (by overriding `_get_train_sampler`)."""

    # compute_loss returns a per-batch mean: the Trainer divides it by the gradient accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, recipe: FinetuningRecipe, sample_weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.label_smoothing_factor > 0:
            raise ValueError("Use --label_smoothing (EAT's own), not --label_smoothing_factor, with this script.")
        self.recipe = recipe
        self.sample_weights = sample_weights
        self.loss_kind = loss_kind(recipe, self.model.config.problem_type == "multi_label_classification")
        self.augment_rng = np.random.default_rng(self.args.seed + self.args.process_index)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            groups = layer_decay_parameter_groups(
                opt_model, self.args.learning_rate, self.args.weight_decay, self.recipe.layer_decay
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        return WeightedEpochSampler(self.sample_weights, self.recipe.samples_per_epoch, seed=self.args.seed)

    def augment(self, input_values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recipe, rng = self.recipe, self.augment_rng
        if recipe.noise_augment:
            input_values = noise_and_shift(input_values, rng)
        targets = labels
        if recipe.mixup_alpha > 0:
            if labels.dtype in (torch.long, torch.int):
                targets = F.one_hot(labels, self.model.config.num_labels).float()
            input_values, targets, _ = mixup(input_values, targets, recipe.mixup_alpha, recipe.mixup_prob, rng)
        return spec_augment(input_values, recipe.specaug_ratio, rng), targets

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        if model.training:
            inputs["input_values"], targets = self.augment(inputs["input_values"], labels)
            smoothing = self.recipe.label_smoothing
        else:
            targets, smoothing = labels, 0.0
        outputs = model(**inputs)
        loss = classification_loss(outputs.logits, targets, self.loss_kind, smoothing)
        return (loss, outputs) if return_outputs else loss


# ------------------------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------------------------


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


class ClassificationMetrics:
    """`compute_metrics` for the Trainer: accuracy (single-label) or mAP (multi-label), with scikit-learn.

    Not `evaluate`: `evaluate.load("accuracy")` fetches the metric script from the Hub at run time and fails offline.
    The last evaluation's predictions stay on the object for `write_evaluation_reports`.
    """

    def __init__(self, label_spec: LabelSpec):
        self.label_spec = label_spec
        self.last: dict[str, np.ndarray] = {}

    def __call__(self, eval_prediction) -> dict[str, float]:
        from sklearn.metrics import accuracy_score

        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        labels = np.asarray(eval_prediction.label_ids)
        if self.label_spec.multi_label:
            mean_ap, per_class = mean_average_precision(labels, logits)
            self.last = {"per_class_ap": per_class}
            return {"map": mean_ap}
        predictions = np.argmax(logits, axis=-1)
        self.last = {"y_true": labels, "y_pred": predictions}
        return {"accuracy": float(accuracy_score(labels, predictions))}


def write_per_class_ap(path: str | Path, per_class_ap: np.ndarray, names: Sequence[str]) -> None:
    lines = ["index\tlabel\taverage_precision"]
    lines += [f"{index}\t{name}\t{ap:.6f}" for index, (name, ap) in enumerate(zip(names, per_class_ap))]
    Path(path).write_text("\n".join(lines) + "\n")


def write_evaluation_reports(metrics: ClassificationMetrics, output_dir: str | Path) -> list[Path]:
    """After an evaluation: `per_class_ap.tsv` for multi-label data, plus the plots `modeling_eat.plotting` offers
    (a confusion matrix, an AP bar chart) when that module and matplotlib are installed. Returns the files written."""
    output_dir = Path(output_dir)
    names = metrics.label_spec.names
    written = []
    if "per_class_ap" in metrics.last:
        write_per_class_ap(output_dir / "per_class_ap.tsv", metrics.last["per_class_ap"], names)
        written.append(output_dir / "per_class_ap.tsv")
    try:
        from . import plotting  # needs matplotlib; the plots are extras
    except ImportError as error:
        logger.info(f"No evaluation plots: {error}")
        return written
    if "per_class_ap" in metrics.last:
        plotting.plot_average_precision(metrics.last["per_class_ap"], names, output_dir / "per_class_ap.png")
        written.append(output_dir / "per_class_ap.png")
    if "y_pred" in metrics.last:
        true_names = [names[index] for index in metrics.last["y_true"]]
        predicted_names = [names[index] for index in metrics.last["y_pred"]]
        plotting.plot_confusion_matrix(true_names, predicted_names, names, output_dir / "confusion_matrix.png")
        written.append(output_dir / "confusion_matrix.png")
    return written


__all__ = [
    "AudioClassificationTransform",
    "ClassificationMetrics",
    "DEFAULT_RECIPE",
    "EATFinetuningTrainer",
    "FinetuningArguments",
    "FinetuningRecipe",
    "LabelSpec",
    "RECIPES",
    "WeightedEpochSampler",
    "build_label_spec",
    "classification_loss",
    "clip_weights_from_labels",
    "get_recipe",
    "layer_decay_parameter_groups",
    "loss_kind",
    "mean_average_precision",
    "mixup",
    "noise_and_shift",
    "prepare_datasets",
    "resolve_recipe",
    "roll_and_gain",
    "spec_augment",
    "write_evaluation_reports",
]
