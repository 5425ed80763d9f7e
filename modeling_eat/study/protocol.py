"""The SSL study's protocol, fixed before it runs: what each row pre-trains (or not), the shared settings of every
pre-training, probe and fine-tuning, and the commands that carry them out with the project's own scripts."""

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..configuration_eat import EATConfig
from ..feature_extraction_eat import EATFeatureExtractor


@dataclass(frozen=True)
class Variant:
    """One row of the study. `pretraining` holds the config fields that differ from the preset's, or is None for a
    row that does not pre-train (its encoder stays at its random initialisation)."""

    name: str
    description: str
    pretraining: dict | None = field(default_factory=dict)


# The EMA schedules the short-run default was chosen among, fixed (not scaled to the run).
OFFICIAL_PROPORTIONS_AT_600 = {"ema_decay": 1 - 80 / 600, "ema_end_decay": 1 - 4 / 600, "ema_anneal_end_step": 150}
SLOW_FIXED = {"ema_decay": 0.999, "ema_end_decay": 0.9999, "ema_anneal_end_step": 1000}

# The rows the issue asks for: the defaults, the paper's three ablations, the sibling objective, and no pre-training.
# "from scratch" is the fine-tuning of the random-init row: the same budget, no pre-training.
VARIANTS = (
    Variant("random_init", "no pre-training: the encoder at its random initialisation", None),
    Variant("eat", "EAT with the defaults (inverse block masks, 16 clones, utterance + frame loss)"),
    Variant("no_utterance_loss", "EAT without the utterance (CLS) loss", {"utterance_loss_weight": 0.0}),
    Variant("random_masks", "EAT with uniform random masks instead of inverse blocks", {"mask_strategy": "random"}),
    Variant("one_clone", "EAT with 1 mask per clip instead of 16", {"clone_batch": 1}),
    Variant("maskspec", "MaskSpec: random masks, spectrogram reconstruction", {"pretraining_objective": "maskspec"}),
)
# Rows that chose the short-run defaults, run on speaker folds of the train split (`--validation_speaker`).
VALIDATION_VARIANTS = (
    Variant("ema_official_proportions", "the official EMA schedule's proportions at 600 updates (a fast teacher)",
            {"ema_scale_with_run": False, **OFFICIAL_PROPORTIONS_AT_600}),
    Variant("ema_slow_fixed", "EMA 0.999 -> 0.9999 over 1,000 updates", {"ema_scale_with_run": False, **SLOW_FIXED}),
    Variant("ema_slow_fixed_mean_utterance", "the slow fixed EMA with the utterance loss averaged over rows",
            {"ema_scale_with_run": False, **SLOW_FIXED, "utterance_loss_reduction": "mean"}),
)
ALL_VARIANTS = VARIANTS + VALIDATION_VARIANTS
VARIANT_NAMES = tuple(variant.name for variant in VARIANTS)


@dataclass(frozen=True)
class StudySettings:
    """Every setting the rows share. Chosen before the study runs; the report records them."""

    preset: str = "small"
    clip_seconds: float = 1.0
    # Per-clip loudness normalisation of every clip (the feature extractor's `waveform_rms`; 0: none).
    waveform_rms: float = 0.05
    tile_short_clips: bool = True
    pretrain_steps: int = 600
    pretrain_batch_size: int = 8
    pretrain_learning_rate: float = 1e-3
    finetune_steps: int = 600
    finetune_batch_size: int = 16
    finetune_learning_rate: float = 1e-3
    finetune_layer_decay: float = 1.0
    finetune_roll_augment: bool = False
    probe_layer: int = -1
    seeds: tuple[int, ...] = (0, 1, 2)

    def to_dict(self) -> dict:
        return {**asdict(self), "seeds": list(self.seeds)}


def variant_config(settings: StudySettings, variant: Variant) -> dict:
    """The full config of a row's model: the preset with the row's changes (objective defaults applied)."""
    config = EATConfig.from_preset(settings.preset, **(variant.pretraining or {}))
    values = config.to_dict()
    for key in ("transformers_version", "architectures", "auto_map", "model_type"):
        values.pop(key, None)
    return values


@dataclass(frozen=True)
class Job:
    """One command of a row and seed; done once `marker` exists, so a study that was stopped picks up where it
    stopped."""

    name: str
    command: tuple[str, ...]
    marker: Path
    log: Path


def command(program: list, options: dict, switches: tuple[str, ...] = ()) -> tuple[str, ...]:
    """`program --option value ... --switch ...` as the strings a subprocess takes."""
    return tuple(str(part) for part in program) + tuple(
        str(part) for option, value in options.items() for part in (option, value)
    ) + switches


def feature_extractor_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "feature_extractor"


def write_feature_extractor(settings: StudySettings, output_dir: Path) -> Path:
    """The extractor every row pre-trains with, saved once; each pre-trained folder carries it on to the probe and
    the fine-tuning."""
    extractor = EATFeatureExtractor.from_preset("audioset", waveform_rms=settings.waveform_rms or None)
    extractor.save_pretrained(feature_extractor_dir(output_dir))
    return feature_extractor_dir(output_dir)


def row_dir(output_dir: Path, variant: Variant, seed: int) -> Path:
    return Path(output_dir) / "runs" / variant.name / f"seed_{seed}"


def row_jobs(
    settings: StudySettings,
    variant: Variant,
    seed: int,
    output_dir: Path,
    pretraining_data: Path,
    evaluation_data: Path,
) -> list[Job]:
    """Pre-training (zero steps for the random-init row: the same model, saved untouched), the frozen probe and the
    fine-tuning of one row and seed, in order."""
    folder = row_dir(output_dir, variant, seed)
    config_file = folder / "config.json"
    pretrained, finetuned = folder / "pretrained", folder / "finetuned"
    steps = settings.pretrain_steps if variant.pretraining is not None else 0
    common = {"--dataset_name": evaluation_data, "--max_length_seconds": settings.clip_seconds, "--seed": seed}
    pretrain = command(
        [sys.executable, "-m", "modeling_eat.pretrain"],
        {**common, "--dataset_name": pretraining_data, "--config_name": config_file,
         "--feature_extractor_name": feature_extractor_dir(output_dir),
         "--per_device_train_batch_size": settings.pretrain_batch_size,
         "--learning_rate": settings.pretrain_learning_rate, "--max_train_steps": steps, "--logging_steps": 50,
         "--output_dir": pretrained},
        switches=("--overwrite_output_dir", *(("--tile_short_clips",) if settings.tile_short_clips else ())),
    )
    probe = command(
        [sys.executable, "-m", "modeling_eat.study.evaluate"],
        {"--model_name_or_path": pretrained, "--dataset_name": evaluation_data, "--layer": settings.probe_layer,
         "--output_json": folder / "probe.json"},
    )
    finetune = command(
        [sys.executable, "-m", "modeling_eat.finetune"],
        {**common, "--model_name_or_path": pretrained, "--max_steps": settings.finetune_steps,
         "--per_device_train_batch_size": settings.finetune_batch_size,
         "--learning_rate": settings.finetune_learning_rate, "--layer_decay": settings.finetune_layer_decay,
         "--roll_augment": settings.finetune_roll_augment, "--output_dir": finetuned, "--eval_strategy": "no",
         "--save_strategy": "no", "--report_to": "none"},
        # A job without its marker is run again from the start, over whatever a stopped run left.
        switches=("--do_train", "--do_eval", "--overwrite_output_dir"),
    )
    name = f"{variant.name}/seed_{seed}"
    return [
        Job(f"{name}/pretrain", pretrain, pretrained / "model.safetensors", folder / "pretrain.log"),
        Job(f"{name}/probe", probe, folder / "probe.json", folder / "probe.log"),
        Job(f"{name}/finetune", finetune, finetuned / "eval_results.json", folder / "finetune.log"),
    ]


def write_row_config(settings: StudySettings, variant: Variant, seed: int, output_dir: Path) -> Path:
    folder = row_dir(output_dir, variant, seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(variant_config(settings, variant), indent=1) + "\n")
    return path


__all__ = [
    "ALL_VARIANTS",
    "VALIDATION_VARIANTS",
    "VARIANTS",
    "VARIANT_NAMES",
    "Job",
    "StudySettings",
    "Variant",
    "row_dir",
    "row_jobs",
    "variant_config",
    "write_feature_extractor",
    "write_row_config",
]
