"""The study's audio: speaker folds of a labelled data set's train split (to choose settings on, never on its test
split), and the synthetic sound set the pre-training set may take in."""

import csv
import subprocess
import sys
from pathlib import Path


def speaker_fold(source: Path, output_dir: Path, held_out: str, speaker_column: str = "speaker") -> Path:
    """An audiofolder made of `source`'s train split only: `test/` is the clips of speaker `held_out`, `train/` the
    other speakers' (links, with every metadata column kept)."""
    source, output_dir = Path(source), Path(output_dir)
    with (source / "train" / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or speaker_column not in rows[0]:
        raise ValueError(f"{source}/train/metadata.csv has no {speaker_column!r} column to make speaker folds with")
    speakers = sorted({row[speaker_column] for row in rows})
    if held_out not in speakers:
        raise ValueError(f"speaker {held_out!r} is not in {source}'s train split; its speakers are {speakers}")
    for split, keep in (("train", lambda row: row[speaker_column] != held_out),
                        ("test", lambda row: row[speaker_column] == held_out)):
        folder = output_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        kept = [row for row in rows if keep(row)]
        for row in kept:
            link = folder / row["file_name"]
            if not link.is_symlink():
                link.symlink_to((source / "train" / row["file_name"]).resolve())
        with (folder / "metadata.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)
    return output_dir


def write_synthetic_set(scripts_dir: Path, output_dir: Path, clips_per_class: int, seed: int = 0) -> Path:
    """The quickstart's synthetic sound set (training/synthetic_audio.py), written by its own script."""
    subprocess.run(
        [sys.executable, str(scripts_dir / "synthetic_audio.py"), str(output_dir),
         "--num_train_per_class", str(clips_per_class), "--num_test_per_class", "1", "--seed", str(seed)],
        check=True, stdout=subprocess.DEVNULL,
    )
    return Path(output_dir)


__all__ = ["speaker_fold", "write_synthetic_set"]
