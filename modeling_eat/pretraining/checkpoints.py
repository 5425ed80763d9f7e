"""Checkpoints of a pre-training run: `accelerate.save_state` plus where the run stands, written atomically,
resumed exactly (the data position included), rotated, and never mixed with another run's in one folder."""

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from ..hub import size_preset_of
from ..outputs import move_into_place, remove_run_files
from ..runtime import CommandError
from .data import StreamPosition
from .monitoring import LOG_FILE


CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
# A checkpoint whose deletion was cut short: never resumed from, removed by the next rotation.
DELETING_PATTERN = re.compile(r"^step_\d+\.deleting$")
PROGRESS_FILE = "training_progress.json"
CONFIG_FILE = "config.json"
# One per process: each streams its own shards, so each stands somewhere else in its stream.
STREAM_POSITION_FILE = "stream_position_{process_index}.json"
# What `save_pretrained` leaves at the end of a finished run.
FINAL_MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")


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


def complete_checkpoints(output_dir) -> list[Path]:
    """The complete `step_N` folders of `output_dir`, oldest (lowest N) first. A folder is only ever renamed to
    `step_N` once fully written, so half-written `step_N.tmp` folders of an interrupted save are never listed."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    steps = [
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if (match := CHECKPOINT_PATTERN.match(path.name)) and (path / PROGRESS_FILE).is_file()
    ]
    return [path for _, path in sorted(steps)]


def checkpoint_step(path) -> int:
    return int(CHECKPOINT_PATTERN.match(Path(path).name).group(1))


def find_latest_checkpoint(output_dir) -> Path | None:
    """The complete `step_N` folder with the highest N, or None."""
    checkpoints = complete_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


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
            "step_N folder written by modeling_eat.pretrain, or 'latest'."
        )
    return path


def checkpoints_mixed_with(output_dir, resume_checkpoint: Path | None) -> list[Path]:
    """The checkpoints of `output_dir` that a run starting now would mix its own with: all of them for a new run or
    one resumed from a checkpoint elsewhere, those after the resumed step for a run resumed from one of them."""
    output_dir = Path(output_dir)
    checkpoints = complete_checkpoints(output_dir)
    if resume_checkpoint is None:
        return checkpoints
    resume_checkpoint = Path(resume_checkpoint)
    if resume_checkpoint.resolve().parent != output_dir.resolve() or not CHECKPOINT_PATTERN.match(
        resume_checkpoint.name
    ):
        return checkpoints
    return [path for path in checkpoints if checkpoint_step(path) > checkpoint_step(resume_checkpoint)]


def check_run_folder(output_dir, resume_checkpoint: Path | None, overwrite_output_dir: bool = False) -> list[Path]:
    """Refuses to start a run whose checkpoints would mix with another run's in `output_dir` (a new run overwrites
    some of the old ones and keeps the later ones, so that `--resume_from_checkpoint latest` would then resume the
    wrong run). With `overwrite_output_dir`, returns what `remove_run_files` must delete instead: those checkpoints,
    and for a new run the old run's log."""
    output_dir = Path(output_dir)
    mixed = checkpoints_mixed_with(output_dir, resume_checkpoint)
    if resume_checkpoint is None:
        mixed += [output_dir / LOG_FILE] if (output_dir / LOG_FILE).is_file() else []
        finished = [name for name in FINAL_MODEL_FILES if (output_dir / name).is_file()]
    else:
        finished = []
    if overwrite_output_dir or not (mixed or finished):
        return mixed
    found = ", ".join([path.name for path in mixed] + finished)
    if resume_checkpoint is None:
        problem, resume_hint = f"{output_dir} already holds another run ({found})", "to continue that run"
    else:
        problem = f"{output_dir} holds later checkpoints than {resume_checkpoint} ({found})"
        resume_hint = "to continue from the newest one"
    raise ValueError(
        f"{problem}: this run would overwrite some of them and keep the others, so that a later "
        f"--resume_from_checkpoint latest could resume the wrong run. Pass --resume_from_checkpoint latest "
        f"{resume_hint}, --overwrite_output_dir to delete those checkpoints and start over, or another --output_dir."
    )


def rotate_checkpoints(output_dir, total_limit: int | None, newest: Path | None = None) -> list[Path]:
    """Deletes the oldest complete checkpoints beyond `total_limit` (and what interrupted deletions left);
    `newest`, the checkpoint just written, is always kept, whatever its step. Returns what was deleted."""
    output_dir = Path(output_dir)
    for path in output_dir.iterdir() if output_dir.is_dir() else []:
        if DELETING_PATTERN.match(path.name):
            shutil.rmtree(path)
    if total_limit is None:
        return []
    if total_limit < 1:
        raise ValueError(
            f"--checkpoints_total_limit must be >= 1 (the newest checkpoint is always kept), got {total_limit}"
        )
    checkpoints = complete_checkpoints(output_dir)
    kept = [newest] if newest is not None and Path(newest) in checkpoints else []
    others = [path for path in checkpoints if path not in kept]
    doomed = others[: max(0, len(others) - (total_limit - len(kept)))]
    remove_run_files(doomed)
    return doomed


def save_checkpoint(
    accelerator,
    output_dir,
    progress: TrainingProgress,
    total_limit: int | None = None,
    stream_position: StreamPosition | None = None,
    config=None,
) -> Path:
    """`accelerator.save_state` (model with teacher and decoder, optimizer, scheduler, RNG states) plus `progress`
    (and, streaming, each process's `stream_position`; and the model's `config`, which names its size when a resume
    does not fit), written into `step_N.tmp` and renamed to `step_N` once every process has finished writing, then
    the oldest checkpoints beyond `total_limit` deleted (`rotate_checkpoints`). All ranks call it."""
    final = checkpoint_dir(output_dir, progress.completed_steps)
    staging = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if stream_position is not None:
        path = staging / STREAM_POSITION_FILE.format(process_index=accelerator.process_index)
        path.write_text(json.dumps(stream_position.to_dict(), indent=2) + "\n")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if config is not None:
            config.to_json_file(staging / CONFIG_FILE)
        progress.save(staging / PROGRESS_FILE)
        move_into_place(staging, final)
        rotate_checkpoints(output_dir, total_limit, newest=final)
    accelerator.wait_for_everyone()
    return final


def _checkpoint_shapes(path: Path) -> dict[str, tuple] | None:
    """Name -> shape of the model weights `save_state` wrote (accelerate's `model.safetensors`), without reading
    them; None where it wrote another layout (DeepSpeed)."""
    from safetensors import safe_open

    weights = Path(path) / "model.safetensors"
    if not weights.is_file():
        return None
    with safe_open(str(weights), framework="pt") as handle:
        return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}


def _size_description(config: dict) -> str:
    preset = size_preset_of(config)
    return (
        f"{f'the {preset} preset' if preset else 'a custom size'} (hidden size {config.get('hidden_size')}, "
        f"{config.get('num_hidden_layers')} blocks)"
    )


def check_checkpoint_fits(model, path) -> None:
    """Refuses, in one line naming both sizes, a checkpoint whose weights do not fit `model` (a resume with another
    `--config_name` than the run's), before `load_state` would list every mismatching weight and before the run
    touches its folder."""
    path = Path(path)
    saved = _checkpoint_shapes(path)
    if saved is None:
        return
    # Under DDP or torch.compile the saved names carry the wrapper's prefix.
    saved = {re.sub(r"^(module\.|_orig_mod\.)+", "", name): shape for name, shape in saved.items()}
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    differing = [name for name in expected if name in saved and saved[name] != expected[name]]
    missing = [name for name in expected if name not in saved]
    if not differing and not missing:
        return
    if differing:
        name = differing[0]
        detail = (
            f"{len(differing)} weights differ in shape, e.g. {name}: {list(saved[name])} there, "
            f"{list(expected[name])} here"
        )
    else:
        detail = f"it lacks {len(missing)} weights of this run's model, e.g. {missing[0]}"
    config_path = path / CONFIG_FILE
    if config_path.is_file():
        saved_config = json.loads(config_path.read_text())
        sizes = (
            f"it holds {_size_description(saved_config)} ({saved_config.get('pretraining_objective')}), this run "
            f"builds {_size_description(model.config.to_dict())} ({model.config.pretraining_objective}); "
        )
        fix = f"pass --config_name {size_preset_of(saved_config) or config_path}"
    else:
        sizes, fix = "", "pass the --config_name (or --model_name_or_path) the run was started with"
    raise CommandError(
        f"--resume_from_checkpoint {path} does not fit this run's model: {sizes}{detail}. To resume it, {fix} (and "
        "the same --pretraining_objective)."
    )


def check_steps_left(path, max_train_steps: int) -> None:
    """Refuses to resume a checkpoint that has already reached the run's last step: the run would train nothing and
    write the checkpoint's model again as the final one, under a log saying it pre-trained."""
    completed = TrainingProgress.load(Path(path) / PROGRESS_FILE).completed_steps
    if completed >= max_train_steps:
        raise CommandError(
            f"--resume_from_checkpoint {path} has done {completed} steps, and this run ends at step {max_train_steps} "
            f"(--max_train_steps, or --num_train_epochs): to continue it, raise --max_train_steps above {completed}."
        )


def load_checkpoint(accelerator, path) -> TrainingProgress:
    accelerator.load_state(str(path))
    return TrainingProgress.load(Path(path) / PROGRESS_FILE)


def load_stream_position(path, process_index: int, num_processes: int) -> StreamPosition:
    """This process's place in its stream, saved by `save_checkpoint`; the run must have as many processes as the
    one that saved it, since each process's shards depend on their number."""
    path = Path(path)
    saved = sorted(path.glob(STREAM_POSITION_FILE.format(process_index="*")))
    if len(saved) != num_processes:
        if not saved:
            raise ValueError(
                f"{path} holds no stream position: it was saved by a run without --streaming; resume it without it."
            )
        raise ValueError(
            f"{path} was saved by a streaming run of {len(saved)} processes; this one has {num_processes}. Each "
            "process reads its own shards, so a stream resumes only with the same number of processes."
        )
    values = json.loads((path / STREAM_POSITION_FILE.format(process_index=process_index)).read_text())
    return StreamPosition.from_dict(values)


__all__ = [
    "TrainingProgress",
    "check_checkpoint_fits",
    "check_run_folder",
    "check_steps_left",
    "checkpoint_dir",
    "checkpoint_step",
    "checkpoints_mixed_with",
    "complete_checkpoints",
    "find_latest_checkpoint",
    "load_checkpoint",
    "load_stream_position",
    "resolve_checkpoint",
    "rotate_checkpoints",
    "save_checkpoint",
]
