"""The README's main command, shrunk to a few steps: it must run end to end offline and report its results."""

import json
import os
import re
import subprocess
import sys


def test_quickstart_runs_end_to_end(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    output_dir = tmp_path / "quickstart"
    command = [
        sys.executable, "-m", "modeling_eat.quickstart",
        "--output_dir", str(output_dir),
        "--config_name", "tiny",
        "--num_train_per_class", "3",
        "--num_labeled_per_class", "2",
        "--num_test_per_class", "2",
        "--pretrain_steps", "2",
        "--finetune_steps", "2",
        "--batch_size", "4",
    ]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    metrics = {arm: json.loads((output_dir / arm / "eval_results.json").read_text())["eval_accuracy"]
               for arm in ("finetuned", "from_scratch")}
    labels = json.loads((output_dir / "finetuned" / "config.json").read_text())["id2label"].values()
    assert all(0.0 <= accuracy <= 1.0 for accuracy in metrics.values())
    expected = (f"accuracy on the test split: pre-trained {metrics['finetuned']:.3f} | from scratch "
                f"{metrics['from_scratch']:.3f} (chance with 7 classes: 0.143)")
    assert expected in result.stdout
    # Pre-training saw every training clip; fine-tuning only the labelled ones, the same for both arms.
    assert len((output_dir / "labeled" / "train" / "metadata.csv").read_text().splitlines()) == 1 + 7 * 2
    # The pipeline's answer names classes of the synthesised set, so the folder's id2label reached it, beside the
    # clip's true label.
    test_rows = (output_dir / "data" / "test" / "metadata.csv").read_text().splitlines()
    clip, true_label = test_rows[1].split(",")[:2]
    pipeline_line = next(line for line in result.stdout.splitlines() if line.startswith("pipeline on "))
    assert pipeline_line.startswith(f"pipeline on {clip} (true label: {true_label}): ")
    guesses = pipeline_line.split("): ", 1)[1].split(", ")
    assert len(guesses) == 3 and all(guess.rsplit(" ", 1)[0] in labels for guess in guesses)
    assert (output_dir / "pretrained" / "model.safetensors").is_file()

    # Quiet: the libraries' details are in each run's command.log, not on the console.
    for noise in ("[RANK 0]", "Distributed environment", "Downloading data", "Generating train split",
                  "Train it first", "Writing model shards", "Configuration saved in"):
        assert noise not in result.stderr, noise
    assert "Distributed environment" in (output_dir / "pretrained" / "command.log").read_text()
    assert "Train it first" in (output_dir / "finetuned" / "command.log").read_text()
    # One timestamp format: every log line starts with the date the way LOG_FORMAT writes it.
    stamped = [line for line in result.stderr.splitlines() if re.match(r"^\d", line)]
    assert stamped and all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING) ", line) for line in stamped)


def test_mistakes_end_the_quickstart_and_the_study_in_one_line(tmp_path):
    """A missing data set or a preset typo was a CalledProcessError traceback from the pre-training step (or a
    FileNotFoundError traceback in the study); now one line, before any step starts."""
    from modeling_eat.study.cli import study_main
    from modeling_eat.study.quickstart import quickstart_main

    from eat_testing import refusal

    missing = tmp_path / "nosuch"
    assert refusal(quickstart_main, ["--output_dir", str(tmp_path / "out"), "--dataset_name", str(missing)]) == (
        f"error: --dataset_name {missing}: no such folder (and not a Hub id): check the path."
    )
    assert "did you mean 'tiny'?" in refusal(quickstart_main, ["--output_dir", str(tmp_path / "out"),
                                                                "--config_name", "tinyy"])
    assert not (tmp_path / "out").exists()
    assert refusal(study_main, ["--dataset_name", str(missing), "--output_dir", str(tmp_path / "study")]) == (
        f"error: {missing} is not an audiofolder with a train split ({missing / 'train' / 'metadata.csv'} is "
        "missing): pass an audiofolder (train/ and test/ folders holding the audio and a metadata.csv with "
        "file_name,label)."
    )
