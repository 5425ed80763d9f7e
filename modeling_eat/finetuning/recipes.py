"""The fine-tuning recipes of EAT (`config/finetuning.yaml` and `scripts/finetuning_*.sh` of the EAT repository): every
setting of an official run that is not a plain `TrainingArguments` field, the command-line flags that override them,
and how a run's recipe is resolved."""

import dataclasses

from ..audio import crop_num_frames, seconds_to_samples
from ..feature_extraction_eat import NORMALIZATION_PRESETS, kaldi_num_frames, patch_aligned
from ..runtime import CommandError


AUDIOSET = NORMALIZATION_PRESETS["audioset"]
# The patch size of every official checkpoint; clip lengths are whole patch rows of it.
PATCH_SIZE = 16


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


# Every official recipe warms up for 10% of its run. As a fraction (TrainingArguments' `warmup_steps` < 1), the warm-up
# keeps that share when --max_steps or the epochs change; 4,000 absolute steps would outlast a 300-step run.
OFFICIAL_WARMUP_FRACTION = 0.1


def _official_training(learning_rate: float, batch_size: int, max_steps: int, **extra) -> dict:
    # Adam (0.9, 0.95), weight decay 0.05, cosine down to 1e-6 (`config/finetuning.yaml`).
    return {
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "max_steps": max_steps,
        "warmup_steps": OFFICIAL_WARMUP_FRACTION,
        "weight_decay": 0.05,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr": 1e-6},
        **extra,
    }


def _normalization(preset: str) -> dict:
    # The clip length and statistics of an official recipe are the feature extractor's preset of the same data.
    values = NORMALIZATION_PRESETS[preset]
    return {"target_length": values["max_length"], "norm_mean": values["mean"], "norm_std": values["std"]}


_AUDIOSET_AUGMENT = {"mixup_alpha": 0.8, "specaug_ratio": 0.2, "roll_augment": True, "label_smoothing": 0.0}

RECIPES = {
    "as20k": FinetuningRecipe(
        **_normalization("audioset"), **_AUDIOSET_AUGMENT, layer_decay=0.65,
        training=_official_training(5e-5, 48, 40_000),
    ),
    "as2m": FinetuningRecipe(
        **_normalization("audioset"), **_AUDIOSET_AUGMENT, layer_decay=0.65,
        weighted_sampling=True, samples_per_epoch=200_000,
        training=_official_training(5e-5, 96, 300_000),
    ),
    "esc50": FinetuningRecipe(
        **_normalization("esc50"), mixup_alpha=0.0, specaug_ratio=0.4, roll_augment=True, label_smoothing=0.1,
        layer_decay=0.65, training=_official_training(5e-5, 48, 4_000),
    ),
    "spc2": FinetuningRecipe(
        **_normalization("spc2"), mixup_alpha=0.8, mixup_loss="bce", specaug_ratio=0.2, roll_augment=True,
        noise_augment=True, label_smoothing=0.1, layer_decay=0.65,
        training=_official_training(2e-4, 256, 40_000, seed=42),
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
        "warmup_steps": OFFICIAL_WARMUP_FRACTION,
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


# A recipe switch on the command line: `--roll_augment` alone turns it on, `--roll_augment false` off (over the
# recipe), left out the recipe decides. HfArgumentParser gives `bool | None` fields no bare form by itself.
FLAG = {"nargs": "?", "const": True}


@dataclasses.dataclass
class FinetuningArguments:
    """Recipe and augmentation flags of `python -m modeling_eat.finetune`; a flag left unset takes the recipe's
    value."""

    recipe: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Official settings (the EAT repository's scripts/finetuning_*.sh): as2m, as20k, esc50 or "
                          "spc2. Unset: small-data defaults.",
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
        default=None, metadata={"help": "Circular shift and Beta(10,10)+0.5 gain of the waveform.", **FLAG}
    )
    noise_augment: bool | None = dataclasses.field(
        default=None, metadata={"help": "SPC-2's fbank noise and +-10 frame shift.", **FLAG}
    )
    label_smoothing: float | None = dataclasses.field(default=None, metadata={"help": "Cross-entropy smoothing."})
    layer_decay: float | None = dataclasses.field(
        default=None, metadata={"help": "Block i of L trains at lr * layer_decay**(L - i); 1 = off."}
    )
    drop_path_rate: float | None = dataclasses.field(default=None, metadata={"help": "Stochastic depth (max)."})
    weighted_sampling: bool | None = dataclasses.field(
        default=None,
        metadata={"help": "Draw each epoch's clips without replacement, weighted towards rare classes (AS-2M).",
                  **FLAG},
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

    if max_length_seconds is not None:
        crop_num_frames(max_length_seconds, PATCH_SIZE, sampling_rate)  # refuses a crop shorter than one patch
    if values["target_length"] is None:
        if max_length_seconds is not None:
            frames = kaldi_num_frames(seconds_to_samples(max_length_seconds, sampling_rate), sampling_rate)
            # Rounded up: every frame of the crop reaches the encoder (the rest of the last patch row is padding).
            values["target_length"] = patch_aligned(frames, PATCH_SIZE, round_up=True)
        else:
            values["target_length"] = AUDIOSET["max_length"]
    for name in ("mean", "std"):
        if values[f"norm_{name}"] is None:
            from_checkpoint = getattr(base_feature_extractor, name, None)
            values[f"norm_{name}"] = from_checkpoint if from_checkpoint is not None else AUDIOSET[name]
    if values["layer_decay"] is None:
        values["layer_decay"] = 0.65 if pretrained else 1.0
    resolved = FinetuningRecipe(**values, training=dict(recipe.training))
    check_recipe(resolved)
    return resolved


def check_recipe(recipe: FinetuningRecipe) -> None:
    checks = [
        (recipe.target_length > 0 and recipe.target_length % PATCH_SIZE == 0,
         f"--target_length must be a positive multiple of the patch size {PATCH_SIZE}, got {recipe.target_length}"),
        (recipe.norm_std > 0, f"--norm_std must be positive, got {recipe.norm_std}"),
        (recipe.mixup_alpha >= 0, f"--mixup_alpha must be >= 0 (0 turns mixup off), got {recipe.mixup_alpha}"),
        (0.0 <= recipe.mixup_prob <= 1.0, f"--mixup_prob must lie in [0, 1], got {recipe.mixup_prob}"),
        (recipe.mixup_loss in ("bce", "soft_ce"), f"--mixup_loss must be 'bce' or 'soft_ce', got {recipe.mixup_loss}"),
        (0.0 <= recipe.specaug_ratio < 1.0, f"--specaug_ratio must lie in [0, 1), got {recipe.specaug_ratio}"),
        (0.0 <= recipe.label_smoothing < 1.0, f"--label_smoothing must lie in [0, 1), got {recipe.label_smoothing}"),
        (0.0 < recipe.layer_decay <= 1.0,
         f"--layer_decay must lie in (0, 1] (1 turns it off), got {recipe.layer_decay}"),
        (0.0 <= recipe.drop_path_rate < 1.0, f"--drop_path_rate must lie in [0, 1), got {recipe.drop_path_rate}"),
        (recipe.samples_per_epoch is None or recipe.samples_per_epoch > 0,
         f"--samples_per_epoch must be positive, got {recipe.samples_per_epoch}"),
    ]
    for ok, message in checks:
        if not ok:
            raise CommandError(message)


__all__ = [
    "DEFAULT_RECIPE",
    "RECIPES",
    "FinetuningArguments",
    "FinetuningRecipe",
    "check_recipe",
    "get_recipe",
    "resolve_recipe",
]
