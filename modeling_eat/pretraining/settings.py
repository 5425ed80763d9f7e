"""What a pre-training run is configured with, and the set-ups it refuses: the EMA teacher needs the full student
weights on every rank, in float32."""

import torch

from ..configuration_eat import EATConfig


# Filled in from the objective's defaults when --pretraining_objective changes the objective of a saved config.
MASKING_FIELDS = ("mask_strategy", "mask_ratio", "clone_batch")


def build_pretraining_config(
    config_name: str | None = None,
    model_name_or_path: str | None = None,
    pretraining_objective: str | None = None,
) -> EATConfig:
    """The configuration to pre-train with: the checkpoint's when continuing from one, else `config_name` (a size
    preset, a config JSON file or a folder; default `base`); `pretraining_objective` overrides the objective and
    resets its masking defaults."""
    try:
        config = EATConfig.from_name_or_path(model_name_or_path or config_name or "base")
    except ValueError as error:
        option = "--model_name_or_path" if model_name_or_path else "--config_name"
        raise ValueError(f"{option}: {error}") from error
    if pretraining_objective is not None and pretraining_objective != config.pretraining_objective:
        values = config.to_dict()
        values.update({field: None for field in MASKING_FIELDS}, pretraining_objective=pretraining_objective)
        for key in ("model_type", "transformers_version", "architectures", "auto_map"):
            values.pop(key, None)
        config = EATConfig(**values)
    config.validate_architecture()
    return config


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
            "fp16/bf16 casts the whole model); the EMA update needs float32. Run DeepSpeed with mixed precision off, "
            "or use DDP (training/configs/accelerate_ddp.yaml) with --mixed_precision bf16, where autocast keeps the "
            "weights in float32."
        )


__all__ = ["build_pretraining_config", "check_supported_distributed_setup", "check_teacher_precision"]
