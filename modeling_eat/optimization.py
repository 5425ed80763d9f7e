"""The optimizer parameter-group rules of EAT, shared by pre-training and fine-tuning: which parameters take weight
decay, and fine-tuning's layer-wise learning-rate decay (`config/pretraining_AS2M.yaml` and `config/finetuning.yaml` of
the EAT repository)."""

import math
from typing import Any

from torch import nn


# The official pre-training warms up for 53,333 of its 400,000 updates (`config/pretraining_AS2M.yaml`).
PRETRAINING_WARMUP_FRACTION = 53_333 / 400_000


def warmup_steps_of(warmup: float, num_training_steps: int) -> int:
    """Warm-up updates of a run: `warmup` updates when it is >= 1, else that fraction of the run, rounded up
    (the rule of transformers' `TrainingArguments.warmup_steps`), so the warm-up keeps its share of any length."""
    if warmup < 0:
        raise ValueError(f"the warm-up must be a number of steps (>= 1) or a fraction of the run, got {warmup}")
    return int(warmup) if warmup >= 1 else math.ceil(num_training_steps * warmup)


# AdamW's numbers and the values they may take: torch refuses others only once the model is built, in a traceback.
ADAMW_NUMBER_RULES = (
    ("learning_rate", "> 0", lambda value: value > 0),
    ("adam_epsilon", "> 0", lambda value: value > 0),
    ("weight_decay", ">= 0", lambda value: value >= 0),
    ("adam_beta1", "in [0, 1)", lambda value: 0 <= value < 1),
    ("adam_beta2", "in [0, 1)", lambda value: 0 <= value < 1),
)


def bad_number(args, rules=ADAMW_NUMBER_RULES) -> str | None:
    """`--name must be a number ..., got ...` for the first of `rules` that `args` (attributes named as the flags)
    breaks, else None; nan passes every comparison, hence the finiteness test."""
    for name, allowed, fits in rules:
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and fits(value)):
            return f"--{name} must be a number {allowed}, got {value}"
    return None


def takes_weight_decay(name: str, parameter: nn.Parameter) -> bool:
    """EAT's rule, in pre-training and fine-tuning alike: decay matrices and kernels, not biases or 1-D parameters
    (LayerNorms)."""
    return parameter.ndim > 1 and not name.endswith(".bias")


def optimizer_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two AdamW groups: weight decay on matrices and kernels; none on biases and 1-D
    parameters (LayerNorms), as EAT. Frozen ones (the EMA teacher) stay out of the optimizer."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if takes_weight_decay(name, parameter) else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


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


__all__ = [
    "ADAMW_NUMBER_RULES",
    "bad_number",
    "PRETRAINING_WARMUP_FRACTION",
    "layer_decay_parameter_groups",
    "optimizer_param_groups",
    "takes_weight_decay",
    "warmup_steps_of",
]
