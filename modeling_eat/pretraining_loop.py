"""Pieces of the EAT pre-training loop (`training/pretrain.py`) that deserve tests: the model's configuration, the
optimizer's parameter groups, and checkpoints that are written atomically and resumed exactly.

Not shipped to the Hub; it may import accelerate.
"""

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .configuration_eat import PRESETS, EATConfig


CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
PROGRESS_FILE = "training_progress.json"
# Filled in from the objective's defaults when --pretraining_objective changes the objective of a saved config.
MASKING_FIELDS = ("mask_strategy", "mask_ratio", "clone_batch")


def build_pretraining_config(
    config_name: str | None = None,
    model_name_or_path: str | None = None,
    pretraining_objective: str | None = None,
) -> EATConfig:
    """The configuration to pre-train with: the checkpoint's when continuing from one, else `config_name` (a preset
    name or a config JSON file); `pretraining_objective` overrides the objective and resets its masking defaults."""
    if model_name_or_path is not None:
        config = EATConfig.from_pretrained(model_name_or_path)
    elif config_name is None or config_name in PRESETS:
        config = EATConfig.from_preset(config_name or "base")
    elif Path(config_name).is_file():
        config = EATConfig.from_json_file(config_name)
    elif Path(config_name).is_dir():
        config = EATConfig.from_pretrained(config_name)
    else:
        raise ValueError(
            f"--config_name {config_name!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a config JSON file "
            "or folder."
        )
    if pretraining_objective is not None and pretraining_objective != config.pretraining_objective:
        values = config.to_dict()
        values.update({field: None for field in MASKING_FIELDS}, pretraining_objective=pretraining_objective)
        for key in ("model_type", "transformers_version", "architectures", "auto_map"):
            values.pop(key, None)
        config = EATConfig(**values)
    config.validate_architecture()
    return config


def takes_weight_decay(name: str, parameter: torch.nn.Parameter) -> bool:
    """EAT's rule, in pre-training and fine-tuning alike: decay matrices and kernels, not biases or 1-D parameters
    (LayerNorms)."""
    return parameter.ndim > 1 and not name.endswith(".bias")


def optimizer_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two AdamW groups: weight decay on matrices and kernels; none on biases and 1-D
    parameters (LayerNorms), as EAT. Frozen ones (the EMA teacher) stay out of the optimizer."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if takes_weight_decay(name, parameter) else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def check_supported_distributed_setup(accelerator) -> None:
    """The EMA update reads the full student weights on every rank: true under DDP and ZeRO-1/2, which replicate
    the parameters, but not under ZeRO-3, which shards them (it would need `deepspeed.zero.GatheredParameters`
    around the update, which this script does not do)."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and int(plugin.zero_stage) == 3:
        raise ValueError(
            "DeepSpeed ZeRO-3 is not supported by EAT pre-training: the EMA teacher update needs the full student "
            "weights on every rank. Use ZeRO stage 2 (e.g. --zero_stage 2 or "
            "training/configs/accelerate_deepspeed_zero2.yaml) or plain DDP."
        )
    fsdp = getattr(accelerator.state, "fsdp_plugin", None)
    if fsdp is not None:
        raise ValueError("FSDP shards the student weights, which the EMA teacher update cannot read: use DDP or "
                         "DeepSpeed ZeRO-2.")


def check_teacher_precision(model) -> None:
    """Refuses a teacher whose weights are not float32 (DeepSpeed fp16/bf16 casts the whole module): `0.9999 * w +
    0.0001 * student` rounds back to `w` in half precision, so the EMA teacher would silently stop moving."""
    teacher = getattr(model, "teacher", None)
    if teacher is None:
        return
    dtypes = {parameter.dtype for parameter in teacher.parameters()}
    if dtypes != {torch.float32}:
        raise ValueError(
            f"the EMA teacher's weights are {sorted(str(d) for d in dtypes)} after accelerator.prepare (DeepSpeed "
            "fp16/bf16 casts the whole model); the EMA update needs float32. Run DeepSpeed with mixed precision off, or "
            "use DDP (training/configs/accelerate_ddp.yaml) with --mixed_precision bf16, where autocast keeps the "
            "weights in float32."
        )


@dataclass
class TrainingProgress:
    """Where a run stands; saved beside `accelerator.save_state`'s files so a resumed run continues exactly."""

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of `epoch` already consumed by each process
    skipped_bad_audio: int = 0  # summed over processes

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainingProgress":
        return cls(**json.loads(Path(path).read_text()))


def checkpoint_dir(output_dir, step: int) -> Path:
    return Path(output_dir) / f"step_{step}"


def find_latest_checkpoint(output_dir) -> Path | None:
    """The complete `step_N` folder with the highest N. A folder is only ever renamed to `step_N` once fully written,
    so half-written `step_N.tmp` folders of an interrupted save are never picked."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = [
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if (match := CHECKPOINT_PATTERN.match(path.name)) and (path / PROGRESS_FILE).is_file()
    ]
    return max(steps)[1] if steps else None


def resolve_checkpoint(resume_from_checkpoint: str, output_dir) -> Path:
    """`latest` → the newest complete checkpoint of `output_dir`; anything else is a checkpoint folder path."""
    if resume_from_checkpoint == "latest":
        latest = find_latest_checkpoint(output_dir)
        if latest is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint latest: no complete step_* checkpoint in {output_dir}. Check --output_dir, "
                "or drop --resume_from_checkpoint to start from scratch."
            )
        return latest
    path = Path(resume_from_checkpoint)
    if not (path / PROGRESS_FILE).is_file():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {path} is not a complete checkpoint folder (no {PROGRESS_FILE}): pass a "
            "step_N folder written by training/pretrain.py, or 'latest'."
        )
    return path


def publish_directory(staging: Path, final: Path) -> None:
    """Moves a fully written folder into place with renames only, so `final` is either absent, old, or new."""
    staging, final = Path(staging), Path(final)
    previous = final.with_name(final.name + ".old")
    if previous.exists():
        shutil.rmtree(previous)
    if final.exists():
        os.replace(final, previous)
    os.replace(staging, final)
    if previous.exists():
        shutil.rmtree(previous)


def save_checkpoint(accelerator, output_dir, progress: TrainingProgress) -> Path:
    """`accelerator.save_state` (model with teacher and decoder, optimizer, scheduler, RNG states) plus `progress`,
    written into `step_N.tmp` and renamed to `step_N` once every process has finished writing. All ranks call it."""
    final = checkpoint_dir(output_dir, progress.completed_steps)
    staging = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        progress.save(staging / PROGRESS_FILE)
        publish_directory(staging, final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path) -> TrainingProgress:
    accelerator.load_state(str(path))
    return TrainingProgress.load(Path(path) / PROGRESS_FILE)


__all__ = [
    "TrainingProgress",
    "build_pretraining_config",
    "check_supported_distributed_setup",
    "check_teacher_precision",
    "checkpoint_dir",
    "find_latest_checkpoint",
    "load_checkpoint",
    "optimizer_param_groups",
    "takes_weight_decay",
    "publish_directory",
    "resolve_checkpoint",
    "save_checkpoint",
]
