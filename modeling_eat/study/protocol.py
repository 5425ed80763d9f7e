"""The SSL study's protocol, fixed before it runs: what each row pre-trains (or not), at which sizes and lengths, the
shared settings of every pre-training, probe and fine-tuning, and the commands that carry them out with the
project's own scripts."""

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
# Rows that chose the short-run defaults (on speaker folds of the train split, `--validation_speaker`) or test a
# change to them on the learning curve. `ema_slow_fixed` and `mean_utterance` each change one of the defaults,
# `ema_slow_fixed_mean_utterance` both, so that a difference on the curve can be traced to one of them.
VALIDATION_VARIANTS = (
    Variant("ema_official_proportions", "the official EMA schedule's proportions at 600 updates (a fast teacher)",
            {"ema_scale_with_run": False, **OFFICIAL_PROPORTIONS_AT_600}),
    Variant("ema_slow_fixed", "EMA 0.999 -> 0.9999 over 1,000 updates", {"ema_scale_with_run": False, **SLOW_FIXED}),
    Variant("mean_utterance", "the utterance loss averaged over rows, the preset's EMA fitted to the run",
            {"utterance_loss_reduction": "mean"}),
    Variant("ema_slow_fixed_mean_utterance", "the slow fixed EMA with the utterance loss averaged over rows",
            {"ema_scale_with_run": False, **SLOW_FIXED, "utterance_loss_reduction": "mean"}),
)
ALL_VARIANTS = VARIANTS + VALIDATION_VARIANTS
VARIANT_NAMES = tuple(variant.name for variant in VARIANTS)
VARIANTS_BY_NAME = {variant.name: variant for variant in ALL_VARIANTS}
BASELINE = "random_init"


@dataclass(frozen=True)
class StudySettings:
    """Every setting the runs share. Chosen before the study runs; the report records them. `presets`,
    `pretrain_steps` and `seeds` span the study (every pre-trained row runs at each preset, length and seed);
    the others are fixed."""

    presets: tuple[str, ...] = ("small",)
    clip_seconds: float = 1.0
    # Per-clip loudness normalisation of every clip (the feature extractor's `waveform_rms`; 0: none).
    waveform_rms: float = 0.05
    tile_short_clips: bool = True
    pretrain_steps: tuple[int, ...] = (600,)
    pretrain_batch_size: int = 8
    pretrain_learning_rate: float = 1e-3
    finetune_steps: int = 600
    finetune_batch_size: int = 16
    finetune_learning_rate: float = 1e-3
    finetune_layer_decay: float = 1.0
    finetune_roll_augment: bool = False
    # Few-label fine-tuning: this many labelled clips per class, drawn from the train split for each seed (0: all).
    finetune_labels_per_class: int = 0
    probe_layer: int = -1
    seeds: tuple[int, ...] = (0, 1, 2)

    # The fields that span the study: a study folder may take more of them later (more seeds, lengths, sizes).
    SPAN = ("presets", "pretrain_steps", "seeds")

    def to_dict(self) -> dict:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    def fixed(self) -> dict:
        """The settings every run of one study folder must share."""
        return {name: value for name, value in self.to_dict().items() if name not in self.SPAN}


@dataclass(frozen=True, order=True)
class Run:
    """One encoder of the study: a row pre-trained at a preset for a number of updates (0 for random init) from a
    seed."""

    variant: str
    preset: str
    steps: int
    seed: int


def study_runs(settings: StudySettings, variant_names) -> list[Run]:
    """Every run of the study, seed-major (every point has its first seed before any has its second), short runs
    first; the random-init row once per preset and seed."""
    runs = []
    for seed in settings.seeds:
        for preset in settings.presets:
            for name in variant_names:
                if VARIANTS_BY_NAME[name].pretraining is None:
                    runs.append(Run(name, preset, 0, seed))
            for steps in sorted(settings.pretrain_steps):
                runs.extend(Run(name, preset, steps, seed) for name in variant_names
                            if VARIANTS_BY_NAME[name].pretraining is not None)
    return runs


@dataclass(frozen=True)
class Evaluation:
    """A labelled data set every encoder is evaluated on: `name` (its folder's name) keys its results, `probe_data`
    trains and scores the linear probe, `finetune_data(seed)` the fine-tuning (a few-label subset or the same)."""

    name: str
    probe_data: Path
    finetune_data: dict[int, Path]


def variant_config(preset: str, variant: Variant) -> dict:
    """The full config of a row's model: the preset with the row's changes (objective defaults applied)."""
    config = EATConfig.from_preset(preset, **(variant.pretraining or {}))
    values = config.to_dict()
    for key in ("transformers_version", "architectures", "auto_map", "model_type"):
        values.pop(key, None)
    return values


@dataclass(frozen=True)
class Job:
    """One command of a run; done once `marker` exists, so a study that was stopped picks up where it stopped. Its
    wall time is kept beside its log (`timing`)."""

    name: str
    kind: str
    command: tuple[str, ...]
    marker: Path
    log: Path

    @property
    def timing(self) -> Path:
        return self.log.with_suffix(".timing.json")


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


def run_dir(output_dir: Path, run: Run) -> Path:
    return Path(output_dir) / "runs" / run.variant / run.preset / f"{run.steps}_steps" / f"seed_{run.seed}"


def run_jobs(
    settings: StudySettings,
    run: Run,
    output_dir: Path,
    pretraining_data: Path,
    evaluations: list[Evaluation],
) -> list[Job]:
    """The pre-training of one run (zero steps for the random-init row: the same model, saved untouched), then for
    each evaluation data set the frozen probe and the fine-tuning, in order."""
    folder = run_dir(output_dir, run)
    pretrained = folder / "pretrained"
    common = {"--max_length_seconds": settings.clip_seconds, "--seed": run.seed}
    pretrain = command(
        [sys.executable, "-m", "modeling_eat.pretrain"],
        {**common, "--dataset_name": pretraining_data, "--config_name": folder / "config.json",
         "--feature_extractor_name": feature_extractor_dir(output_dir),
         "--per_device_train_batch_size": settings.pretrain_batch_size,
         "--learning_rate": settings.pretrain_learning_rate, "--max_train_steps": run.steps, "--logging_steps": 50,
         "--output_dir": pretrained},
        # A job without its marker is not done: whatever a stopped attempt left in its folder is started over.
        switches=("--overwrite_output_dir", *(("--tile_short_clips",) if settings.tile_short_clips else ())),
    )
    name = f"{run.variant}/{run.preset}/{run.steps}_steps/seed_{run.seed}"
    jobs = [Job(f"{name}/pretrain", "pretrain", pretrain, pretrained / "model.safetensors", folder / "pretrain.log")]
    for evaluation in evaluations:
        results = folder / evaluation.name
        probe = command(
            [sys.executable, "-m", "modeling_eat.study.evaluate"],
            {"--model_name_or_path": pretrained, "--dataset_name": evaluation.probe_data,
             "--layer": settings.probe_layer, "--output_json": results / "probe.json"},
        )
        finetune = command(
            [sys.executable, "-m", "modeling_eat.finetune"],
            {**common, "--dataset_name": evaluation.finetune_data[run.seed], "--model_name_or_path": pretrained,
             "--max_steps": settings.finetune_steps, "--per_device_train_batch_size": settings.finetune_batch_size,
             "--learning_rate": settings.finetune_learning_rate, "--layer_decay": settings.finetune_layer_decay,
             "--roll_augment": settings.finetune_roll_augment, "--output_dir": results / "finetuned",
             "--eval_strategy": "no", "--save_strategy": "no", "--report_to": "none"},
            # A job without its marker is run again from the start, over whatever a stopped run left.
            switches=("--do_train", "--do_eval", "--overwrite_output_dir"),
        )
        jobs += [
            Job(f"{name}/{evaluation.name}/probe", "probe", probe, results / "probe.json", results / "probe.log"),
            Job(f"{name}/{evaluation.name}/finetune", "finetune", finetune,
                results / "finetuned" / "eval_results.json", results / "finetune.log"),
        ]
    return jobs


def write_run_config(run: Run, output_dir: Path) -> Path:
    folder = run_dir(output_dir, run)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(variant_config(run.preset, VARIANTS_BY_NAME[run.variant]), indent=1) + "\n")
    return path


__all__ = [
    "ALL_VARIANTS",
    "BASELINE",
    "VALIDATION_VARIANTS",
    "VARIANTS",
    "VARIANTS_BY_NAME",
    "VARIANT_NAMES",
    "Evaluation",
    "Job",
    "Run",
    "StudySettings",
    "Variant",
    "run_dir",
    "run_jobs",
    "study_runs",
    "variant_config",
    "write_feature_extractor",
    "write_run_config",
]
