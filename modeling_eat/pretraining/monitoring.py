"""What a pre-training run watches: whether its EMA teacher can follow the student in a run of this length, whether
the targets have collapsed, and the log it keeps beside its checkpoints."""

import json
from pathlib import Path

import torch

from ..modeling_eat import EATTeacher
from ..outputs import PRETRAINING_LOG_FILE, move_into_place, staging_path


# A collapse to one target for every patch takes the targets' spread across patches (target_std) towards 0.
COLLAPSED_TARGET_STD = 0.05
# EAT's targets are instance-normalised per clip, which hides a subtler collapse from target_std: targets that come
# to encode where a patch is rather than what it holds. In short runs whose teacher followed the student quickly,
# the share of their variance that position explains rose to 0.86-0.94 (0.76-0.85 with a slow teacher; FIDELITY.md).
POSITIONAL_TARGET_SHARE = 0.9
# A random teacher's targets are positional by nature (a random network's output at a patch is much of its position
# embedding, and padding is the same at every position): at the first step the share measured 0.31-0.69 on 1 s
# crops of FSDD and of drum hits, 0.82-0.89 on padded 2 s crops of FSDD (FIDELITY.md), and can pass
# POSITIONAL_TARGET_SHARE before any learning. The warning therefore weighs the share against the one the run started
# with: it fires only once the part of the targets' variance that position does not explain has fallen to this
# fraction of what it was at the run's first step.
POSITIONAL_DRIFT = 0.5
LOG_FILE = PRETRAINING_LOG_FILE


def initial_weight_share(teacher: EATTeacher, num_updates: int) -> float:
    """The share of its initial weights the teacher still holds after `num_updates` updates: the product of the
    decays (each update keeps `decay` of the teacher)."""
    return float(teacher.ema_decay(torch.arange(num_updates)).prod()) if num_updates > 0 else 1.0


def teacher_horizon_warning(teacher: EATTeacher | None, num_updates: int) -> str | None:
    """Why this run's teacher (None for MaskSpec, which has none) would barely move from its random initialisation,
    or None: the EMA's horizon (`1 / (1 - decay)` updates at the first update) must not exceed the run."""
    if teacher is None or num_updates <= 0:
        return None
    first_decay = float(teacher.ema_decay(0))
    horizon = 1.0 / max(1.0 - first_decay, 1e-12)
    if horizon <= num_updates * (1 + 1e-9):
        return None
    return (
        f"the EMA teacher averages over ~{horizon:.0f} updates (1 / (1 - ema_decay {first_decay})), longer than "
        f"the run's {num_updates}: at its end it still holds {initial_weight_share(teacher, num_updates):.0%} of its "
        "random initialisation, so the targets stay close to a random network's. Pre-train longer, or set "
        "ema_scale_with_run (as the tiny and small presets do) to fit the schedule to the run."
    )


def collapse_warning(
    target_std: float, target_position_share: float | None = None, initial_position_share: float | None = None
) -> str | None:
    """Why the teacher's targets look collapsed, or None. `initial_position_share` is the run's
    `target_position_share` at its first step (its teacher's at the start): the targets are taken for position codes
    only when their share is above `POSITIONAL_TARGET_SHARE` and the rest of their variance has shrunk to
    `POSITIONAL_DRIFT` of what it was then, not when they are as positional as the run's starting teacher made them."""
    if target_std < COLLAPSED_TARGET_STD:
        return (
            f"the teacher's targets have collapsed: their spread across patches (target_std) is {target_std:.3g}, "
            f"below {COLLAPSED_TARGET_STD}, so every patch gets nearly the same target and the student learns nothing."
            " Lower the learning rate, lengthen the warm-up, or slow the EMA (a higher ema_decay)."
        )
    if target_position_share is None or target_position_share <= POSITIONAL_TARGET_SHARE:
        return None
    if initial_position_share is not None and (
        1.0 - target_position_share > POSITIONAL_DRIFT * (1.0 - initial_position_share)
    ):
        return None
    since = "" if initial_position_share is None else f", against {initial_position_share:.0%} at the run's start"
    return (
        f"the teacher's targets are turning into position codes: the patch position explains "
        f"{target_position_share:.0%} of their variance (target_position_share{since}; above "
        f"{POSITIONAL_TARGET_SHARE:.0%}), so predicting them teaches little about the audio. Slow the EMA (a "
        "higher ema_decay: a teacher that follows a fast-moving student drifts this way) or lower the learning "
        "rate."
    )


def append_log(output_dir, logs: dict) -> None:
    """One JSON line per logging step, beside the run's checkpoints."""
    with open(Path(output_dir) / LOG_FILE, "a") as handle:
        handle.write(json.dumps(logs) + "\n")


def drop_log_rows_after(output_dir, step: int) -> int:
    """Removes the rows of steps after `step` from the run's log (rewritten beside it and moved into place): a run
    killed after its last checkpoint had logged steps that the resumed run logs again. Returns how many went."""
    path = Path(output_dir) / LOG_FILE
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) == len(lines):
        return 0
    staging = staging_path(path)
    staging.write_text("".join(line + "\n" for line in kept))
    move_into_place(staging, path)
    return len(lines) - len(kept)


def read_log(output_dir) -> list[dict]:
    path = Path(output_dir) / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


__all__ = [
    "COLLAPSED_TARGET_STD",
    "POSITIONAL_DRIFT",
    "POSITIONAL_TARGET_SHARE",
    "LOG_FILE",
    "append_log",
    "collapse_warning",
    "drop_log_rows_after",
    "initial_weight_share",
    "read_log",
    "teacher_horizon_warning",
]
