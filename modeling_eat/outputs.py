"""What the commands write, and what they must never lose.

- `check_writable`: before any work, a file is created in (and removed from) the folder an output goes to, so that a
  read-only or missing destination fails in seconds rather than after hours of training.
- `staging_path` / `move_into_place`: a new file or folder is written beside its destination under a hidden name and
  renamed into place once complete, so that the destination is always absent, the old one or the new one; a run cut
  short never leaves a half-written output, and never destroys the one it was to replace.
- `check_replaceable`: an output file that exists is replaced only when this package wrote it; anything else at that
  path (an input WAV, the user's own JSON or picture) is the user's, and the command refuses before any work.
- `RUN_FILE_PATTERNS` / `check_output_folder`: the files a model folder or a run of this package's commands leaves;
  a command refuses a folder holding another run's unless told to overwrite it, and then deletes exactly those (so
  that nothing stale, an old `eval_results.json` beside a new model, survives), never anything else.
"""

import fnmatch
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .hub import CODE_FILES
from .runtime import CommandError


# What a saved model folder holds, what the Trainer, the pre-training run, the evaluation reports and the export
# add beside it, and the command log: everything `--overwrite_output_dir` may replace.
MODEL_FILE_PATTERNS = (
    "config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "preprocessor_config.json",
    "README.md",
    *CODE_FILES,
)
PRETRAINING_LOG_FILE = "pretraining_log.jsonl"
COMMAND_LOG_FILE = "command.log"
RUN_FILE_PATTERNS = (
    *MODEL_FILE_PATTERNS,
    # Trainer
    "trainer_state.json",
    "training_args.bin",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "checkpoint-*",
    "runs",
    # evaluation reports (modeling_eat.finetuning.metrics)
    "confusion_matrix.png",
    "per_class_ap.png",
    "per_class_ap.tsv",
    # pre-training (modeling_eat.pretraining)
    "step_*",
    PRETRAINING_LOG_FILE,
    # export (modeling_eat.deployment)
    "model.onnx",
    "model.pt2",
    "export.json",
    COMMAND_LOG_FILE,
)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def check_writable(path, option: str = "--output_dir", is_file: bool = False) -> None:
    """Raises `CommandError` unless this process can write `path` (a folder, created later if missing; with
    `is_file`, a file whose folder must be writable): a probe file is created in the nearest existing folder and
    removed. Nothing is left behind, and a missing folder is not created."""
    path = Path(path)
    if not is_file and path.exists() and not path.is_dir():
        raise CommandError(f"{option} {path} is a file, not a folder: pass a folder (new or one you can write to).")
    folder = _nearest_existing(path.parent if is_file else path)
    if not folder.is_dir():
        raise CommandError(f"{option} {path} cannot be created: {folder} is a file, not a folder. Choose another one.")
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise CommandError(
            f"{option} {path} cannot be written ({error.strerror or error} in {folder}): choose a folder you can "
            "write to, or give yourself write permission on it."
        ) from None


def check_replaceable(path, is_ours: Callable[[Path], bool], refusal: str) -> None:
    """Raises `CommandError(refusal)` when `path` exists and `is_ours(path)` says this package did not write it."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not is_ours(path):
        raise CommandError(refusal)


def staging_path(final) -> Path:
    """The hidden sibling a new `final` is written to before `move_into_place` (one per process)."""
    final = Path(final)
    return final.with_name(f".{final.name}.writing-{os.getpid()}")


def remove_path(path) -> None:
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def move_into_place(staging, final) -> None:
    """Moves a fully written file or folder to `final` with renames only, so that `final` is either absent, the old
    one or the new one, never a mix; the old one is deleted once the new one is in place."""
    staging, final = Path(staging), Path(final)
    previous = final.with_name(f".{final.name}.replaced")
    remove_path(previous)
    if final.exists() or final.is_symlink():
        if staging.is_file() and final.is_file():
            os.replace(staging, final)  # one atomic step for a file over a file
            return
        os.replace(final, previous)
    os.replace(staging, final)
    remove_path(previous)


def run_files(folder, patterns: Iterable[str] = RUN_FILE_PATTERNS) -> list[Path]:
    """The entries of `folder` a model folder or a run of this package leaves (matching `patterns`), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if any(fnmatch.fnmatch(path.name, p) for p in patterns))


def check_output_folder(
    folder, overwrite: bool, *, option: str = "--output_dir", flag: str = "--overwrite_output_dir",
    patterns: Iterable[str] = RUN_FILE_PATTERNS, alternatives: str = "",
) -> list[Path]:
    """Refuses an output `folder` that holds another model or run (`CommandError`, naming what is there and
    `flag`); with `overwrite`, returns those entries for `remove_run_files`, to be deleted once the new run is ready
    to write. The user's other files are neither listed nor touched."""
    found = run_files(folder, patterns)
    if [path.name for path in found] == [COMMAND_LOG_FILE] and not overwrite:
        return []  # the log of a run that stopped before it wrote anything: the new run appends to it
    if found and not overwrite:
        names = ", ".join(path.name for path in found[:6]) + (" ..." if len(found) > 6 else "")
        raise CommandError(
            f"{option} {folder} already holds another model or run ({names}): pass {flag} to replace it (those "
            f"files are deleted, nothing else){alternatives}, or another {option}."
        )
    return found


def remove_run_files(paths: Iterable) -> None:
    """Deletes what `check_output_folder` listed; a folder is renamed first, so that a deletion cut short never leaves
    a half-deleted checkpoint under its own name."""
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            doomed = path.with_name(path.name + ".deleting")
            remove_path(doomed)
            os.replace(path, doomed)
            shutil.rmtree(doomed)
        else:
            remove_path(path)


def same_folder(first, second) -> bool:
    """Whether two paths name the same existing folder (a Hub id or a missing path never does)."""
    first, second = Path(first), Path(second)
    return first.is_dir() and second.is_dir() and first.resolve() == second.resolve()


__all__ = [
    "COMMAND_LOG_FILE",
    "MODEL_FILE_PATTERNS",
    "PRETRAINING_LOG_FILE",
    "RUN_FILE_PATTERNS",
    "check_output_folder",
    "check_replaceable",
    "check_writable",
    "move_into_place",
    "remove_path",
    "remove_run_files",
    "run_files",
    "same_folder",
    "staging_path",
]
