"""Checkpoints of a pre-training run: `accelerate.save_state` plus where the run stands, written atomically and
resumed exactly (the data position included)."""

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path


CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
PROGRESS_FILE = "training_progress.json"


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
    "checkpoint_dir",
    "find_latest_checkpoint",
    "load_checkpoint",
    "publish_directory",
    "resolve_checkpoint",
    "save_checkpoint",
]
