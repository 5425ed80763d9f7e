"""The study's audio: its pre-training set is the union of audiofolders' train splits (labels dropped), linked into
one folder rather than copied."""

import csv
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def merge_train_splits(sources: Sequence[Path], output_dir: Path) -> Path:
    """An audiofolder whose `train/` lists every clip of the sources' `train/` splits (symlinked, under one
    sub-folder per source) with no label: unlabeled pre-training data."""
    split = Path(output_dir) / "train"
    split.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, source in enumerate(map(Path, sources)):
        metadata = source / "train" / "metadata.csv"
        if not metadata.is_file():
            raise FileNotFoundError(f"{source} is not an audiofolder with a train split: {metadata} is missing")
        folder = split / f"{index}_{source.name}"
        folder.mkdir(exist_ok=True)
        with metadata.open(newline="") as handle:
            for row in csv.DictReader(handle):
                link = folder / row["file_name"]
                if not link.exists():
                    link.symlink_to((source / "train" / row["file_name"]).resolve())
                rows.append(f"{folder.name}/{row['file_name']}")
    with (split / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name"])
        writer.writerows([row] for row in rows)
    return Path(output_dir)


def write_synthetic_set(scripts_dir: Path, output_dir: Path, clips_per_class: int, seed: int = 0) -> Path:
    """The quickstart's synthetic sound set (training/synthetic_audio.py), written by its own script."""
    subprocess.run(
        [sys.executable, str(scripts_dir / "synthetic_audio.py"), str(output_dir),
         "--num_train_per_class", str(clips_per_class), "--num_test_per_class", "1", "--seed", str(seed)],
        check=True, stdout=subprocess.DEVNULL,
    )
    return Path(output_dir)


__all__ = ["merge_train_splits", "write_synthetic_set"]
