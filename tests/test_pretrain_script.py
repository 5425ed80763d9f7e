"""End-to-end tests of `accelerate launch -m modeling_eat.pretrain`: 2-process DDP and DeepSpeed ZeRO-2 runs on the
CPU, killed after their first checkpoint and resumed with `--resume_from_checkpoint latest`, against an uninterrupted
DDP run; the same for a 2-process streaming run over parquet shards; and the refusal to mix two runs in one folder.

Each launch costs tens of seconds of process start-up on a 2-core machine; the first DeepSpeed launch on a machine
also JIT-compiles DeepSpeed's CPU shared-memory communication op once (cached in ~/.cache/torch_extensions).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from modeling_eat import EATForPreTraining, EATModel
from modeling_eat.pretraining import cli as pretraining_cli
from modeling_eat.pretraining.monitoring import COLLAPSED_TARGET_STD, read_log

from eat_testing import PROJECT_ROOT, read_only_folder, refusal


CONFIGS = PROJECT_ROOT / "training" / "configs"
LAUNCH_TIMEOUT = 900  # the first DeepSpeed launch compiles a C++ op

NUM_WAVS = 19
CORRUPT_ROW = 7
# 16 rows (the corrupt one among them) / 4 clips per step = 4 steps per epoch: 8 steps read the corrupt file twice.
MAX_TRAIN_SAMPLES = 16
MAX_TRAIN_STEPS = 8
EXPECTED_SKIPPED = 2
FINAL_LINE = re.compile(
    r"pretraining done: step=(\d+) teacher_num_updates=(\d+) ema_decay=([0-9.]+) skipped_bad_audio=(\d+)"
)
DDP_FLAGS = ["--multi_gpu", "--num_processes", "2", "--mixed_precision", "no", "--num_machines", "1",
             "--dynamo_backend", "no"]


def accelerate_command() -> list[str]:
    executable = Path(sys.executable).with_name("accelerate")
    return [str(executable)] if executable.is_file() else [shutil.which("accelerate") or "accelerate"]


def environment(use_cpu: bool) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    # accelerate turns DeepSpeed off when ACCELERATE_USE_CPU is set; DeepSpeed finds its CPU accelerator by itself.
    env["ACCELERATE_USE_CPU"] = "1" if use_cpu else "0"
    return env


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory, fsdd_dir) -> Path:
    """A copy of a few FSDD training clips plus one corrupt WAV listed in the metadata (labels are ignored)."""
    root = tmp_path_factory.mktemp("fsdd_subset")
    split = root / "train"
    split.mkdir()
    header, *rows = (fsdd_dir / "train" / "metadata.csv").read_text().splitlines()
    kept = []
    for index, row in enumerate(rows[:NUM_WAVS]):
        if index == CORRUPT_ROW:
            (split / "corrupt.wav").write_bytes(os.urandom(3000))
            kept.append("corrupt.wav," + ",".join(row.split(",")[1:]))
        shutil.copy(fsdd_dir / "train" / row.split(",")[0], split)
        kept.append(row)
    (split / "metadata.csv").write_text("\n".join([header, *kept]) + "\n")
    return root


@pytest.fixture(scope="module")
def parquet_shards(audio_folder, tmp_path_factory) -> Path:
    """The same clips (the corrupt one among them) as 4 parquet shards holding the audio bytes: 2 per process."""
    from datasets import load_dataset

    from modeling_eat.audio import write_parquet_shards

    folder = tmp_path_factory.mktemp("parquet_shards")
    dataset = load_dataset("audiofolder", data_dir=str(audio_folder), split="train").select(range(MAX_TRAIN_SAMPLES))
    write_parquet_shards(dataset, folder, num_shards=4)
    return folder


def pretrain_command(launch_flags: list[str], data_dir: Path, output_dir: Path, *extra: str,
                     max_train_samples: int | None = MAX_TRAIN_SAMPLES) -> list[str]:
    samples = ["--max_train_samples", str(max_train_samples)] if max_train_samples else []
    return [
        *accelerate_command(), "launch", *launch_flags, "-m", "modeling_eat.pretrain",
        "--dataset_name", str(data_dir),
        "--config_name", "tiny",
        "--max_length_seconds", "1",
        "--per_device_train_batch_size", "2",
        *samples,
        "--max_train_steps", str(MAX_TRAIN_STEPS),
        "--checkpointing_steps", "3",
        "--logging_steps", "2",
        "--output_dir", str(output_dir),
        *extra,
    ]


def run(command: list[str], env: dict) -> str:
    result = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=LAUNCH_TIMEOUT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def final_state(output: str) -> tuple:
    match = FINAL_LINE.search(output)
    assert match, output[-3000:]
    step, num_updates, decay, skipped = match.groups()
    return int(step), int(num_updates), float(decay), int(skipped)


def run_killed_then_resumed(launch_flags: list[str], data_dir: Path, output_dir: Path, env: dict,
                            command: list[str] | None = None) -> tuple[str, str]:
    """Starts a run, kills all its processes as soon as `step_3` is published, then resumes it with `latest`."""
    command = command or pretrain_command(launch_flags, data_dir, output_dir)
    log_path = output_dir.with_suffix(".first.log")
    with open(log_path, "w") as log:
        launcher = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while not (output_dir / "step_3" / "training_progress.json").is_file():
            assert launcher.poll() is None, log_path.read_text()[-5000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        # The workers run in their own sessions (torch elastic), so kill the launcher's whole process tree by id.
        processes = [psutil.Process(launcher.pid), *psutil.Process(launcher.pid).children(recursive=True)]
        for process in processes:
            process.kill()
        psutil.wait_procs(processes, timeout=60)
    first_output = log_path.read_text()
    assert "pretraining done" not in first_output and not (output_dir / "model.safetensors").exists(), (
        "the first run finished before it could be killed"
    )
    # A half-written checkpoint of a later step must be ignored by `latest`.
    (output_dir / f"step_{MAX_TRAIN_STEPS - 1}.tmp").mkdir()
    resumed = run(command + ["--resume_from_checkpoint", "latest"], env)
    return first_output, resumed


@pytest.fixture(scope="module")
def uninterrupted_run(audio_folder, tmp_path_factory) -> tuple[Path, tuple]:
    output_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    output = run(pretrain_command(DDP_FLAGS, audio_folder, output_dir), environment(use_cpu=True))
    return output_dir, final_state(output)


def resumed_from(output: str) -> int:
    match = re.search(r"Resuming from \S*step_(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1))


def test_run_logs_its_teacher_and_targets_and_fits_the_ema_to_its_length(uninterrupted_run):
    output_dir, (_, _, final_decay, _) = uninterrupted_run
    logs = read_log(output_dir)
    assert [row["step"] for row in logs] == [2, 4, 6, 8]
    for row in logs:
        assert row["target_std"] > COLLAPSED_TARGET_STD and row["prediction_std"] > 0
        assert 0 < row["teacher_distance"] < 1 and 0 <= row["ema_decay"] <= 1
    # The share the positional warning weighs later ones against: the first step's, the same on every line.
    assert len({row["initial_target_position_share"] for row in logs}) == 1
    assert 0 <= logs[0]["initial_target_position_share"] <= 1
    # The tiny preset's teacher fits its EMA schedule to the run: 8 updates give horizons of 8, then 80 updates.
    start, end = 1 - 1 / 8, 1 - 1 / 80
    expected = [start + (end - start) * step / 8 for step in (2, 4, 6)] + [end]
    assert [row["ema_decay"] for row in logs] == pytest.approx(expected)
    assert final_decay == pytest.approx(end)
    # The config still says what the schedule is made of; the teacher is told the run's length at every start.
    config = json.loads((output_dir / "config.json").read_text())
    assert config["ema_scale_with_run"] and (config["ema_decay"], config["ema_anneal_end_step"]) == (0.9998, 100000)


def test_ddp_run_killed_after_a_checkpoint_resumes_exactly(audio_folder, uninterrupted_run, tmp_path):
    reference_dir, reference_state = uninterrupted_run
    assert reference_state[:2] == (MAX_TRAIN_STEPS, MAX_TRAIN_STEPS)
    assert reference_state[3] == EXPECTED_SKIPPED

    output_dir = tmp_path / "run"
    _, resumed = run_killed_then_resumed(
        ["--config_file", str(CONFIGS / "accelerate_ddp.yaml"), "--num_processes", "2", "--mixed_precision", "no"],
        audio_folder, output_dir, environment(use_cpu=True),
    )
    # The state's dump is in the run's log, not on the console.
    assert "DistributedType.MULTI_CPU" in (output_dir / "command.log").read_text()
    assert "Distributed environment" not in resumed and "[RANK " not in resumed
    assert 3 <= resumed_from(resumed) < MAX_TRAIN_STEPS
    # The steps the first run logged after its checkpoint are logged once, by the resumed run.
    assert [row["step"] for row in read_log(output_dir)] == [2, 4, 6, 8]
    # The resumed run weighs its shares against the start of the run, read back from its log, not its own start.
    initial_share = read_log(reference_dir)[0]["initial_target_position_share"]
    assert {row["initial_target_position_share"] for row in read_log(output_dir)} == {initial_share}
    # Same step count, EMA updates, EMA decay and bad-audio count as the uninterrupted run.
    assert final_state(resumed) == reference_state

    # Crops, masks and decoder noise are keyed by position and DDP on gloo is deterministic: bit-identical weights
    # (student, teacher with its update count, decoder).
    reference, weights = load_file(reference_dir / "model.safetensors"), load_file(output_dir / "model.safetensors")
    assert reference.keys() == weights.keys()
    assert {name.split(".")[0] for name in weights} == {"eat", "teacher", "decoder"}
    for name in reference:
        assert torch.equal(reference[name], weights[name]), name

    pretraining = EATForPreTraining.from_pretrained(output_dir)
    assert int(pretraining.teacher.num_updates) == MAX_TRAIN_STEPS
    # The run's length is the run's to tell (a resumed or continued run tells it again); told, the teacher's decay
    # is where the run left it.
    pretraining.teacher.fit_schedule_to_run(MAX_TRAIN_STEPS)
    assert float(pretraining.teacher.ema_decay()) == pytest.approx(reference_state[2], abs=1e-8)
    encoder = EATModel.from_pretrained(output_dir)
    for name, parameter in encoder.state_dict().items():
        torch.testing.assert_close(parameter, weights[f"eat.{name}"], rtol=0, atol=0)
    assert (output_dir / "preprocessor_config.json").is_file()


def test_deepspeed_zero2_run_killed_after_a_checkpoint_resumes(audio_folder, uninterrupted_run, tmp_path):
    reference_dir, reference_state = uninterrupted_run
    output_dir = tmp_path / "run"
    _, resumed = run_killed_then_resumed(
        ["--config_file", str(CONFIGS / "accelerate_deepspeed_zero2.yaml"), "--num_processes", "2"],
        audio_folder, output_dir, environment(use_cpu=False),
    )
    assert (output_dir / "command.log").read_text().count("DistributedType.DEEPSPEED") >= 2  # both launches
    assert (output_dir / "step_3" / "pytorch_model").is_dir()  # DeepSpeed's own (sharded) checkpoint format
    assert 3 <= resumed_from(resumed) < MAX_TRAIN_STEPS
    assert final_state(resumed) == reference_state

    # ZeRO-2 flattens and buckets the gradients, so it matches DDP to rounding, not bit for bit.
    reference, weights = load_file(reference_dir / "model.safetensors"), load_file(output_dir / "model.safetensors")
    assert reference.keys() == weights.keys()
    for name in reference:
        torch.testing.assert_close(weights[name], reference[name], rtol=0, atol=1e-5, msg=name)
    assert int(EATForPreTraining.from_pretrained(output_dir).teacher.num_updates) == MAX_TRAIN_STEPS
    EATModel.from_pretrained(output_dir)


def test_compiled_run_saves_a_loadable_folder(audio_folder, uninterrupted_run, tmp_path):
    # accelerate's `--dynamo_backend` wraps the model in torch.compile's module; the saved folder must not carry it.
    reference_dir, _ = uninterrupted_run
    output_dir = tmp_path / "run"
    launch_flags = ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                    "--dynamo_backend", "eager"]
    output = run(pretrain_command(launch_flags, audio_folder, output_dir), environment(use_cpu=True))
    assert final_state(output)[:2] == (MAX_TRAIN_STEPS, MAX_TRAIN_STEPS)
    assert load_file(output_dir / "model.safetensors").keys() == load_file(reference_dir / "model.safetensors").keys()
    assert int(EATForPreTraining.from_pretrained(output_dir).teacher.num_updates) == MAX_TRAIN_STEPS


def test_streaming_run_reads_its_own_shards_per_process_and_resumes_at_the_same_position(parquet_shards, tmp_path):
    # 8 clips per process (one corrupt) in batches of 2: 8 steps are 2 passes over each process's stream, so the
    # resumed run continues in the middle of its first pass and crosses into the second.
    def command(output_dir: Path) -> list[str]:
        return pretrain_command(DDP_FLAGS, parquet_shards, output_dir, "--streaming", "--checkpoints_total_limit", "1",
                                max_train_samples=None)

    env = environment(use_cpu=True)
    reference = run(command(tmp_path / "uninterrupted"), env)
    for rank in (0, 1):
        assert f"process {rank} of 2 streams 2 of 4 shards" in reference
    reference_state = final_state(reference)
    assert reference_state[:2] == (MAX_TRAIN_STEPS, MAX_TRAIN_STEPS)
    assert reference_state[3] == EXPECTED_SKIPPED  # the corrupt clip, once per pass of the process that holds it

    output_dir = tmp_path / "run"
    _, resumed = run_killed_then_resumed(DDP_FLAGS, parquet_shards, output_dir, env, command(output_dir))
    assert 3 <= resumed_from(resumed) < MAX_TRAIN_STEPS
    positions = re.findall(r"stream resumed at StreamPosition\(epoch=(\d+), batches_in_epoch=(\d+)", resumed)
    assert len(positions) == 2 and all(int(batches) >= 3 for _, batches in positions)
    assert final_state(resumed) == reference_state
    weights = load_file(output_dir / "model.safetensors")
    reference_weights = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    for name in reference_weights:
        assert torch.equal(reference_weights[name], weights[name]), name
    # --checkpoints_total_limit 1: only the newest checkpoint is left, with one stream position per process.
    checkpoints = sorted(path.name for path in output_dir.iterdir() if path.name.startswith("step_"))
    assert checkpoints == [f"step_{MAX_TRAIN_STEPS - MAX_TRAIN_STEPS % 3}", f"step_{MAX_TRAIN_STEPS - 1}.tmp"]
    assert sorted(path.name for path in (output_dir / checkpoints[0]).glob("stream_position_*.json")) == [
        "stream_position_0.json", "stream_position_1.json"
    ]


def test_every_option_has_help_and_schedulers_print_as_names(capsys):
    parser = pretraining_cli.build_pretrain_parser()
    assert [action.dest for action in parser._actions if not action.help] == []
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    usage = capsys.readouterr().out
    assert "cosine_with_min_lr" in usage and "SchedulerType" not in usage
    args = pretraining_cli.parse_pretrain_args(
        ["--dataset_name", "d", "--output_dir", "o", "--lr_scheduler_type", "cosine_with_min_lr"]
    )
    assert args.lr_scheduler_type == "cosine_with_min_lr"


def test_a_second_run_into_a_used_folder_is_refused(tmp_path):
    output_dir = tmp_path / "run"
    (output_dir / "step_4").mkdir(parents=True)
    (output_dir / "step_4" / "training_progress.json").write_text('{"completed_steps": 4}')
    command = [sys.executable, "-m", "modeling_eat.pretrain", "--dataset_name", "unused",
               "--output_dir", str(output_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                            env=environment(use_cpu=True))
    assert result.returncode == 1
    assert "already holds another run (step_4)" in result.stderr
    assert "--resume_from_checkpoint latest" in result.stderr and "--overwrite_output_dir" in result.stderr
    assert [path.name for path in output_dir.iterdir()] == ["step_4"]


def test_resuming_with_another_preset_is_refused_naming_both(audio_folder, uninterrupted_run, tmp_path):
    reference_dir, _ = uninterrupted_run
    checkpoint = reference_dir / "step_6"
    output_dir = tmp_path / "run"
    command = [sys.executable, "-m", "modeling_eat.pretrain", "--dataset_name", str(audio_folder),
               "--config_name", "small", "--resume_from_checkpoint", str(checkpoint), "--output_dir", str(output_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                            env=environment(use_cpu=True))
    assert result.returncode == 1, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: --resume_from_checkpoint {checkpoint} does not fit this run's model: it holds "
                            "the tiny preset (hidden size 64, 3 blocks) (eat), this run builds the small preset")
    assert "weights differ in shape, e.g." in error and error.endswith(
        "To resume it, pass --config_name tiny (and the same --pretraining_objective)."
    )
    assert "size mismatch" not in result.stderr and not output_dir.exists()


def test_mistakes_fail_before_the_run_in_one_line(audio_folder, tmp_path, no_hub_token, capsys):
    output_dir = tmp_path / "run"
    common = ["--dataset_name", str(audio_folder), "--config_name", "tiny", "--max_length_seconds", "1",
              "--max_train_steps", "1", "--num_threads", "1"]

    def arguments(*extra, output=output_dir):
        return [*common, "--output_dir", str(output), *extra]

    main = pretraining_cli.pretrain_main
    with read_only_folder(tmp_path / "locked") as locked:
        assert "cannot be " in refusal(main, arguments(output=locked / "run"))
    assert "--push_to_hub needs a Hub token" in refusal(main, arguments("--push_to_hub"))
    assert "did you mean 'tiny'?" in refusal(main, [*arguments(), "--config_name", "tinyy"])
    assert "--dataset_name is empty" in refusal(main, [*arguments(), "--dataset_name", ""])
    # 20 rows, --max_train_samples 16: a batch of 32 cannot be filled (once a ZeroDivisionError).
    assert refusal(main, arguments("--per_device_train_batch_size", "32", "--max_train_samples", "16")) == (
        f"error: --per_device_train_batch_size 32 needs 32 clips per step, and {audio_folder} (train split, "
        "--max_train_samples) holds 16: pre-training uses whole batches only, so lower the batch size or use more "
        "data."
    )
    # Each of these was a traceback, once the model had been built (or, for the huge crop, a process killed for
    # memory while it padded its first batch to 100000 s).
    assert refusal(main, arguments("--audio_column_name", "sound")).startswith(
        f"error: --audio_column_name 'sound' is not a column of {audio_folder} (train split; its columns are audio, "
    )
    assert refusal(main, arguments("--train_split_name", "validation")) == (
        f"error: --train_split_name validation: {audio_folder} has no such split (it has train): pass one of those."
    )
    assert "gives fewer fbank frames than one patch" in refusal(main, arguments("--max_length_seconds", "0"))
    assert refusal(main, arguments("--max_length_seconds", "100000")).startswith(
        "error: --max_length_seconds 100000.0 (9999984 frames) is longer than the model takes (12288 frames, "
    )
    assert refusal(main, arguments("--num_threads", "0")).startswith("error: --num_threads must be >= 1, got 0")
    assert refusal(main, arguments("--feature_extractor_name", "audiosett")).startswith(
        "error: --feature_extractor_name 'audiosett' is neither a preset (did you mean 'audioset'? "
    )
    # A checkpoint that already reached the run's last step would be trained for nothing and saved as the result.
    done = tmp_path / "elsewhere" / "step_4"
    done.mkdir(parents=True)
    (done / "training_progress.json").write_text('{"completed_steps": 4}')
    assert refusal(main, arguments("--resume_from_checkpoint", str(done))) == (
        f"error: --resume_from_checkpoint {done} has done 4 steps, and this run ends at step 1 (--max_train_steps, "
        "or --num_train_epochs): to continue it, raise --max_train_steps above 4."
    )
    assert not output_dir.exists()
    # argparse's usage error, before anything else (a bad learning rate was AdamW's traceback after the model built).
    usage_errors = {
        "--max_train_steps -1": "--max_train_steps must be >= 0",
        "--num_train_epochs 0": "--num_train_epochs must be >= 1",
        "--dataloader_num_workers -1": "--dataloader_num_workers must be >= 0",
        "--learning_rate -1": "--learning_rate must be a number > 0, got -1.0",
        "--learning_rate nan": "--learning_rate must be a number > 0, got nan",
        "--adam_beta2 1": "--adam_beta2 must be a number in [0, 1), got 1.0",
        "--weight_decay -0.1": "--weight_decay must be a number >= 0, got -0.1",
    }
    for flag, message in usage_errors.items():
        with pytest.raises(SystemExit) as error:
            pretraining_cli.parse_pretrain_args(arguments(*flag.split()))
        assert error.value.code == 2
        assert capsys.readouterr().err.strip().endswith(f"error: {message}")
