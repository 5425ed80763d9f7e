"""The synthetic sound set the study's pre-training data may take in."""

import subprocess
import sys
from pathlib import Path


def write_synthetic_set(scripts_dir: Path, output_dir: Path, clips_per_class: int, seed: int = 0) -> Path:
    """The quickstart's synthetic sound set (training/synthetic_audio.py), written by its own script."""
    subprocess.run(
        [sys.executable, str(scripts_dir / "synthetic_audio.py"), str(output_dir),
         "--num_train_per_class", str(clips_per_class), "--num_test_per_class", "1", "--seed", str(seed)],
        check=True, stdout=subprocess.DEVNULL,
    )
    return Path(output_dir)


__all__ = ["write_synthetic_set"]
