"""`python -m modeling_eat.finetune`: recipe/flag precedence, an end-to-end fine-tune of a tiny EAT on FSDD, the
checks before training (one line each, nothing written), and the skipping of files that cannot be decoded."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from modeling_eat.finetuning import cli as finetuning_cli
from modeling_eat.finetuning.recipes import resolve_recipe
from modeling_eat.runtime import CommandError

from eat_testing import read_only_folder, refusal, save_tiny_ast, save_tiny_classifier


DIGITS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


@pytest.fixture(scope="module")
def finetune_script():
    return finetuning_cli


def test_recipe_sets_training_arguments_and_given_flags_win(finetune_script, tmp_path):
    common = ["--dataset_name", "data", "--output_dir", str(tmp_path)]
    model_args, data_args, finetuning_args, training_args, runtime_args = finetune_script.parse_finetune_arguments(
        [*common, "--recipe", "spc2", "--learning_rate", "5e-05", "--mixup_alpha", "0.3", "--num_threads", "3"]
    )
    # 5e-05 is TrainingArguments' own default: given explicitly, it must still beat the recipe's 2e-4.
    assert training_args.learning_rate == 5e-05
    assert training_args.per_device_train_batch_size == 256 and training_args.max_steps == 40_000
    assert training_args.warmup_steps == 0.1 and training_args.adam_beta2 == 0.95
    assert training_args.get_warmup_steps(40_000) == 4_000
    assert training_args.lr_scheduler_type == "cosine_with_min_lr"
    assert training_args.lr_scheduler_kwargs == {"min_lr": 1e-6}
    assert finetuning_args.recipe == "spc2" and finetuning_args.mixup_alpha == 0.3
    assert finetuning_args.specaug_ratio is None  # unset: resolve_recipe takes the recipe's value
    assert model_args.freeze_feature_encoder is False and data_args.eval_split_name is None
    assert runtime_args.num_threads == 3

    config_file = tmp_path / "args.json"
    config_file.write_text(json.dumps({"dataset_name": "data", "output_dir": str(tmp_path), "recipe": "esc50",
                                       "max_steps": 7}))
    training_args = finetune_script.parse_finetune_arguments([str(config_file)])[3]
    assert (training_args.max_steps, training_args.per_device_train_batch_size) == (7, 48)

    training_args = finetune_script.parse_finetune_arguments(common)[3]
    assert training_args.learning_rate == 5e-05 and training_args.weight_decay == 0.05  # small-data defaults


def test_recipe_switches_parse_as_the_readme_writes_them(finetune_script, tmp_path):
    common = ["--dataset_name", "data", "--output_dir", str(tmp_path)]
    # As flags, also right before another option; `false` turns off what a recipe turns on; unset, the recipe decides.
    finetuning_args = finetune_script.parse_finetune_arguments(
        [*common, "--weighted_sampling", "--roll_augment", "--noise_augment", "--recipe", "esc50"]
    )[2]
    assert (finetuning_args.weighted_sampling, finetuning_args.roll_augment, finetuning_args.noise_augment) == (
        True, True, True
    )
    arguments = [*common, "--recipe", "esc50", "--roll_augment", "false"]
    finetuning_args = finetune_script.parse_finetune_arguments(arguments)[2]
    assert finetuning_args.roll_augment is False and finetuning_args.weighted_sampling is None
    resolved = resolve_recipe(finetuning_args, pretrained=True)
    assert resolved.roll_augment is False and resolved.weighted_sampling is False  # esc50 rolls, but the flag wins
    config_file = tmp_path / "args.json"
    config_file.write_text(json.dumps({"dataset_name": "data", "output_dir": str(tmp_path), "noise_augment": True}))
    assert finetune_script.parse_finetune_arguments([str(config_file)])[2].noise_augment is True


def test_recipe_warmup_keeps_its_share_of_a_shorter_run(finetune_script, tmp_path):
    # A 300-step run of the SPC-2 recipe warms up for 30 steps: 4,000 absolute steps would keep it at <= 1.5e-5.
    common = ["--dataset_name", "data", "--output_dir", str(tmp_path), "--recipe", "spc2"]
    training_args = finetune_script.parse_finetune_arguments([*common, "--max_steps", "300"])[3]
    assert training_args.get_warmup_steps(training_args.max_steps) == 30
    explicit = finetune_script.parse_finetune_arguments([*common, "--max_steps", "300", "--warmup_steps", "50"])[3]
    assert explicit.get_warmup_steps(explicit.max_steps) == 50


def test_finetune_tiny_on_fsdd_then_pipeline(fsdd_dir, tmp_path):
    output_dir = tmp_path / "eat-fsdd"
    # One intra-op thread: under `pytest -n 2` both cores are busy already, and torch's own thread pool fighting
    # for them made training steps ~10x slower in a measurement here.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "modeling_eat.finetune",
        "--config_name", "tiny",
        "--dataset_name", str(fsdd_dir),
        "--output_dir", str(output_dir),
        "--max_train_samples", "64", "--max_eval_samples", "32",
        "--max_steps", "8", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
        "--max_length_seconds", "1", "--learning_rate", "1e-3",
        "--do_train", "--do_eval", "--save_strategy", "no", "--report_to", "none", "--use_cpu",
        "--disable_tqdm", "true",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    # The output holds no warning about what this run does not use: pinned memory without a GPU, DeepSpeed.
    assert "pin_memory" not in result.stderr and "unable to detect" not in result.stderr, result.stderr[-5000:]

    eval_results = json.loads((output_dir / "eval_results.json").read_text())
    assert 0.0 <= eval_results["eval_accuracy"] <= 1.0 and eval_results["eval_loss"] > 0
    config = json.loads((output_dir / "config.json").read_text())
    assert set(config["id2label"].values()) == DIGITS
    assert config["problem_type"] == "single_label_classification"
    preprocessor = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert preprocessor["max_length"] == 112 and preprocessor["mean"] == -4.268
    assert "eat" in (output_dir / "README.md").read_text()
    assert (output_dir / "confusion_matrix.png").stat().st_size > 0  # modeling_eat.plotting is installed here

    from transformers import pipeline

    import modeling_eat  # noqa: F401  (registers EAT with the Auto classes)

    classifier = pipeline("audio-classification", model=str(output_dir))
    wav = sorted((fsdd_dir / "test").glob("*.wav"))[0]
    predictions = classifier(str(wav), top_k=3)
    assert len(predictions) == 3 and {p["label"] for p in predictions} <= DIGITS
    assert sum(p["score"] for p in classifier(str(wav), top_k=10)) == pytest.approx(1.0, abs=1e-4)


def test_model_from_a_pretraining_folder_takes_the_student_and_a_new_head(finetune_script, tmp_path):
    import torch

    from modeling_eat import EATConfig, EATForPreTraining
    from modeling_eat.finetuning.labels import build_label_spec
    from modeling_eat.finetuning.recipes import FinetuningRecipe

    torch.manual_seed(0)
    pretrained = EATForPreTraining(EATConfig.from_preset("tiny"))
    with torch.no_grad():  # make the teacher differ, so taking it instead of the student would show
        for param in pretrained.teacher.parameters():
            param.add_(1.0)
    pretrained.save_pretrained(tmp_path / "pretrained")

    label_spec = build_label_spec(None, ["dog", "cat", "owl"])
    model_args = finetune_script.ModelArguments(model_name_or_path=str(tmp_path / "pretrained"))
    recipe = FinetuningRecipe(drop_path_rate=0.1, target_length=128)
    model = finetune_script.build_model(model_args, label_spec, recipe)
    student = pretrained.eat.state_dict()
    for name, value in model.eat.state_dict().items():
        assert torch.equal(value, student[name]), name
    assert model.config.id2label == {0: "cat", 1: "dog", 2: "owl"} and model.classifier.out_features == 3
    assert model.config.drop_path_rate == 0.1 and model.config.max_length == 128
    assert model.eat.layers[-1].drop_path.drop_prob == pytest.approx(0.1)

    with pytest.raises(CommandError, match="neither --model_name_or_path nor --config_name is given: pass"):
        finetune_script.build_model(finetune_script.ModelArguments(), label_spec, FinetuningRecipe())


# ------------------------------------------------------------------------------ a newcomer's mistakes, and bad files


def small_audiofolder(fsdd_dir, root, num_train: int = 8, num_test: int = 4, broken: bool = False):
    """A few FSDD clips of two digits as an audiofolder; `broken` adds, to both splits, a file that is no audio and
    a 10 ms clip (160 samples, shorter than one fbank frame), both listed in metadata.csv."""
    for split, count in (("train", num_train), ("test", num_test)):
        folder = root / split
        folder.mkdir(parents=True)
        header, *rows = (fsdd_dir / split / "metadata.csv").read_text().splitlines()
        rows = [row for row in rows if row.split(",")[1] in ("zero", "one")]
        rows = rows[:: max(1, len(rows) // count)][:count]
        for row in rows:
            shutil.copy(fsdd_dir / split / row.split(",")[0], folder)
        if broken:
            (folder / "corrupt.wav").write_bytes(os.urandom(3000))
            soundfile.write(folder / "blip.wav", np.zeros(160, dtype=np.float32), 16000)
            rest = ",".join(rows[0].split(",")[2:])
            rows += [f"corrupt.wav,zero,{rest}", f"blip.wav,one,{rest}"]
        (folder / "metadata.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def finetune_arguments(data, output_dir, *extra) -> list[str]:
    return [
        "--config_name", "tiny", "--dataset_name", str(data), "--output_dir", str(output_dir),
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
        "--max_length_seconds", "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu",
        "--disable_tqdm", "true", "--num_threads", "1", *extra,
    ]


def test_mistakes_are_named_in_one_line_before_anything_is_written(fsdd_dir, tmp_path, no_hub_token, capsys):
    data = small_audiofolder(fsdd_dir, tmp_path / "data")
    output_dir = tmp_path / "out"
    unlabelled = tmp_path / "unlabelled"
    for split in ("train", "test"):
        shutil.copytree(data / split, unlabelled / split, ignore=shutil.ignore_patterns("metadata.csv"))
    ast = save_tiny_ast(tmp_path / "ast")
    pretrained = tmp_path / "pretrained"
    save_tiny_classifier(pretrained, 112, {0: "zero", 1: "one"})
    main = finetuning_cli.finetune_main

    def arguments(**changes):
        values = {"--config_name": "tiny", "--dataset_name": str(data), "--output_dir": str(output_dir), **changes}
        return [item for name, value in values.items() if value is not None for item in (name, value)]

    assert "--dataset_name is empty: pass an audiofolder" in refusal(main, arguments(**{"--dataset_name": ""}))
    assert f"--dataset_name {tmp_path / 'dta'}: no such folder" in refusal(
        main, arguments(**{"--dataset_name": str(tmp_path / "dta")})
    )
    assert "--config_name 'tinyy' is neither a size preset (did you mean 'tiny'? the presets are" in refusal(
        main, arguments(**{"--config_name": "tinyy"})
    )
    model_typo = arguments(**{"--config_name": None, "--model_name_or_path": str(tmp_path / "runs" / "typo")})
    assert f"--model_name_or_path {tmp_path / 'runs' / 'typo'}: no such folder" in refusal(main, model_typo)
    other_model = arguments(**{"--config_name": None, "--model_name_or_path": str(ast)})
    assert "holds a model of type 'audio-spectrogram-transformer' (ASTModel), not EAT" in refusal(main, other_model)
    same_folder = arguments(**{"--config_name": None, "--model_name_or_path": str(pretrained),
                               "--output_dir": str(pretrained)})
    assert "is the folder of --model_name_or_path" in refusal(main, same_folder)
    assert "--push_to_hub needs a Hub token and none is set: run `hf auth login`" in refusal(
        main, [*arguments(), "--push_to_hub"]
    )
    # Each was a traceback once the data and the model were loaded: torch's DataLoader, AdamW, the random crop.
    assert refusal(main, [*arguments(), "--per_device_train_batch_size", "0"]) == (
        "error: --per_device_train_batch_size must be >= 1, got 0: pass a positive count."
    )
    assert refusal(main, [*arguments(), "--learning_rate", "nan"]) == (
        "error: --learning_rate must be a number > 0, got nan: pass a number in that range."
    )
    assert refusal(main, [*arguments(), "--max_length_seconds", "0"]).startswith(
        "error: --max_length_seconds 0.0 gives fewer fbank frames than one patch (16 frames, "
    )
    for checkpoint in (tmp_path / "nosuch", pretrained):
        assert refusal(main, [*arguments(), "--resume_from_checkpoint", str(checkpoint)]) == (
            f"error: --resume_from_checkpoint {checkpoint} is not a checkpoint of a fine-tuning run (no "
            "trainer_state.json there): pass a checkpoint-N folder this command wrote in its --output_dir "
            "(--save_strategy steps)."
        )
    with pytest.raises(SystemExit):
        finetuning_cli.parse_finetune_arguments(["--output_dir", str(output_dir), "--recipe", "bogus"])
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "python -m modeling_eat.finetune: error: argument --recipe: invalid choice: 'bogus'"
    )
    assert refusal(main, arguments(**{"--config_name": None})) == (
        "error: neither --model_name_or_path nor --config_name is given: pass --model_name_or_path (a checkpoint to "
        "fine-tune) or --config_name (a size preset such as tiny or base, to train from scratch)."
    )
    # An audiofolder without metadata.csv: its label column holds None for every clip (once KeyError: None after
    # training had started).
    assert "unlabelled (train split) has no labels in its 'label' column: an audiofolder takes them from a " \
           "metadata.csv" in refusal(main, finetune_arguments(unlabelled, output_dir))
    assert not output_dir.exists()


def test_a_second_run_into_a_used_folder_is_refused_naming_overwrite_output_dir(fsdd_dir, tmp_path):
    data = small_audiofolder(fsdd_dir, tmp_path / "data")
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    for name in ("config.json", "model.safetensors", "trainer_state.json", "eval_results.json"):
        (output_dir / name).write_text("the first run's")
    message = refusal(finetuning_cli.finetune_main, finetune_arguments(data, output_dir))
    assert message.startswith(f"error: --output_dir {output_dir} already holds another model or run (config.json, ")
    assert "pass --overwrite_output_dir to replace it" in message and "--resume_from_checkpoint" in message
    assert all((output_dir / name).read_text() == "the first run's" for name in ("config.json", "model.safetensors"))
    assert len(list(output_dir.iterdir())) == 4


def test_a_read_only_output_dir_fails_in_seconds_with_one_line(fsdd_dir, tmp_path):
    data = small_audiofolder(fsdd_dir, tmp_path / "data")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with read_only_folder(tmp_path / "locked") as locked:
        command = [sys.executable, "-m", "modeling_eat.finetune", *finetune_arguments(data, locked / "run")]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr[-3000:]
    assert result.stderr.startswith(f"error: --output_dir {locked / 'run'} cannot be ")
    assert "choose a folder you can write to" in result.stderr or "Choose another one" in result.stderr


def test_bad_files_are_skipped_and_listed_and_the_upload_holds_the_pictures(fsdd_dir, tmp_path, fake_hub, caplog):
    data = small_audiofolder(fsdd_dir, tmp_path / "data", broken=True)
    output_dir = tmp_path / "eat-digits"
    output_dir.mkdir()
    # What an earlier run left (replaced or deleted under --overwrite_output_dir) and a file of the user's (kept).
    (output_dir / "per_class_ap.tsv").write_text("stale")
    (output_dir / "notes.txt").write_text("mine")
    # 3 steps of 4 clips: every one of the 10 training rows is drawn.
    arguments = finetune_arguments(
        data, output_dir, "--max_steps", "3", "--overwrite_output_dir", "--push_to_hub", "--hub_model_id",
        "test-user/eat-digits", "--hub_token", "hf_fake_token",
    )
    with caplog.at_level("WARNING"):
        metrics = finetuning_cli.finetune_main(arguments)

    skipped = [str(data / split / name) for split in ("train", "test") for name in ("corrupt.wav", "blip.wav")]
    listing = next(record.message for record in caplog.records if record.message.startswith("skipped "))
    assert listing.startswith("skipped 4 files that could not be decoded (the warnings above say why): ")
    assert sorted(listing.split(": ", 1)[1].split(", ")) == sorted(skipped)
    assert any("160 samples, shorter than one 25 ms frame" in record.message for record in caplog.records)
    # The evaluation scored the 4 decodable test clips (test_metrics_leave_out_clips_that_could_not_be_decoded).
    eval_results = json.loads((output_dir / "eval_results.json").read_text())
    assert eval_results["eval_accuracy"] == metrics["eval_accuracy"] and (4 * metrics["eval_accuracy"]).is_integer()
    assert sorted(path.name for path in output_dir.iterdir() if not path.suffix == ".py") == [
        "README.md", "all_results.json", "command.log", "config.json", "confusion_matrix.png", "eval_results.json",
        "model.safetensors", "notes.txt", "preprocessor_config.json", "train_results.json", "trainer_state.json",
        "training_args.bin",
    ]
    assert (output_dir / "notes.txt").read_text() == "mine"
    # The token was checked before training, and the folder went up with its evaluation pictures.
    assert fake_hub.requests[0] == "GET /api/whoami-v2"
    assert {"confusion_matrix.png", "eval_results.json", "model.safetensors"} <= set(fake_hub.uploaded)
