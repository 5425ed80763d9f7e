"""What a pre-training run watches: whether its EMA teacher can follow the student in a run of this length, whether
the targets have collapsed, and the log it keeps beside its checkpoints."""

import json
import math
from pathlib import Path

import torch

from ..configuration_eat import EATConfig
from ..modeling_eat import ema_decay_schedule


# Targets are layer-normalised per patch, so while they carry information their spread across patches stays near
# 0.5-1 per channel; a collapse (every patch given the same target) takes it to 0.
COLLAPSED_TARGET_STD = 0.05
LOG_FILE = "pretraining_log.jsonl"


def initial_weight_share(config: EATConfig, num_updates: int) -> float:
    """The share of its initial weights the teacher still holds after `num_updates` updates: the product of the
    decays (each update keeps `decay` of the teacher)."""
    return float(ema_decay_schedule(config, torch.arange(num_updates)).prod()) if num_updates > 0 else 1.0


def teacher_horizon_warning(config: EATConfig, num_updates: int) -> str | None:
    """Why this run's teacher would barely move from its random initialisation, or None: the EMA's horizon
    (`1 / (1 - ema_decay)` updates) must not exceed the run."""
    if config.pretraining_objective != "eat" or num_updates <= 0:
        return None
    horizon = 1.0 / max(1.0 - config.ema_decay, 1e-12)
    if horizon <= num_updates:
        return None
    return (
        f"the EMA teacher averages over ~{horizon:.0f} updates (1 / (1 - ema_decay {config.ema_decay})), longer than "
        f"the run's {num_updates}: at its end the teacher still holds "
        f"{initial_weight_share(config, num_updates):.0%} of its random initialisation, so the targets barely "
        "improve. Pre-train longer, or set ema_scale_with_run (as the tiny and small presets do) or a lower ema_decay "
        "for a short run."
    )


def scale_ema_to_run(config: EATConfig, num_updates: int) -> None:
    """With `config.ema_scale_with_run`, sets the EMA schedule to the official one scaled to a run of
    `num_updates`: the official run (400k updates) starts at a horizon of 5k updates (decay 0.9998), ends at 100k
    (0.99999) and anneals over the first 100k, i.e. horizons of 1/80 and 1/4 of the run, annealed over its first
    quarter. A horizon is at least one update (decay 0: the teacher copies the student). Changes nothing otherwise."""
    if not config.ema_scale_with_run:
        return
    config.ema_decay = 1.0 - 1.0 / max(1.0, num_updates / 80)
    config.ema_end_decay = 1.0 - 1.0 / max(1.0, num_updates / 4)
    config.ema_anneal_end_step = max(1, math.ceil(num_updates / 4))


def collapse_warning(target_std: float) -> str | None:
    if target_std >= COLLAPSED_TARGET_STD:
        return None
    return (
        f"the teacher's targets have collapsed: their spread across patches (target_std) is {target_std:.3g}, below "
        f"{COLLAPSED_TARGET_STD}, so every patch gets nearly the same target and the student learns nothing. Lower "
        "the learning rate, lengthen the warm-up, or slow the EMA (a higher ema_decay)."
    )


def append_log(output_dir, logs: dict) -> None:
    """One JSON line per logging step, beside the run's checkpoints."""
    with open(Path(output_dir) / LOG_FILE, "a") as handle:
        handle.write(json.dumps(logs) + "\n")


def read_log(output_dir) -> list[dict]:
    path = Path(output_dir) / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


__all__ = [
    "COLLAPSED_TARGET_STD",
    "LOG_FILE",
    "append_log",
    "collapse_warning",
    "initial_weight_share",
    "read_log",
    "scale_ema_to_run",
    "teacher_horizon_warning",
]
