"""The pre-training run's settings and checkpoints (modeling_eat/pretraining/settings.py, checkpoints.py): the
config resolver, the refused distributed set-ups, atomic, resumable and rotated checkpoints, and the refusal to mix
two runs in one folder."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from modeling_eat import EATConfig, EATForPreTraining
from modeling_eat.outputs import remove_run_files
from modeling_eat.pretraining.checkpoints import (
    PROGRESS_FILE,
    TrainingProgress,
    check_run_folder,
    find_latest_checkpoint,
    load_stream_position,
    resolve_checkpoint,
    rotate_checkpoints,
    save_checkpoint,
)
from modeling_eat.pretraining.data import StreamPosition
from modeling_eat.pretraining.monitoring import LOG_FILE
from modeling_eat.pretraining.settings import (
    build_pretraining_config,
    check_supported_distributed_setup,
    check_teacher_precision,
)


def test_pretraining_config_presets_files_and_objective_override(tmp_path):
    assert build_pretraining_config("tiny").hidden_size == 64
    assert build_pretraining_config(None).hidden_size == 768
    switched = build_pretraining_config("tiny", pretraining_objective="maskspec")
    assert (switched.mask_strategy, switched.mask_ratio, switched.clone_batch) == ("random", 0.75, 1)
    EATConfig.from_preset("tiny", num_hidden_layers=2, average_top_k_layers=2).to_json_file(tmp_path / "c.json")
    assert build_pretraining_config(str(tmp_path / "c.json")).num_hidden_layers == 2
    with pytest.raises(ValueError, match="--config_name: 'huge' is neither a size preset"):
        build_pretraining_config("huge")


def test_latest_checkpoint_ignores_temporary_and_incomplete_folders(tmp_path):
    assert find_latest_checkpoint(tmp_path / "missing") is None
    for name, complete in [("step_3", True), ("step_12", True), ("step_20.tmp", True), ("step_15", False)]:
        (tmp_path / name).mkdir()
        if complete:
            step = int(name.split("_")[1].split(".")[0])
            TrainingProgress(completed_steps=step).save(tmp_path / name / PROGRESS_FILE)
    (tmp_path / "step_99.txt").write_text("")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "step_12"
    assert resolve_checkpoint("latest", tmp_path) == tmp_path / "step_12"
    assert resolve_checkpoint(str(tmp_path / "step_3"), tmp_path) == tmp_path / "step_3"
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "step_15"), tmp_path)
    with pytest.raises(FileNotFoundError, match="no complete step_\\* checkpoint"):
        resolve_checkpoint("latest", tmp_path / "step_15")


class RecordingAccelerator:
    """The part of `accelerate.Accelerator` that `save_checkpoint` uses, with a save that can fail half-way."""

    is_main_process = True

    def __init__(self, fail: bool = False, process_index: int = 0):
        self.fail = fail
        self.process_index = process_index

    def wait_for_everyone(self):
        pass

    def save_state(self, output_dir):
        Path(output_dir).mkdir(parents=True)
        (Path(output_dir) / "model.safetensors").write_text("weights")
        if self.fail:
            raise KeyboardInterrupt("killed while saving")


def test_checkpoint_save_is_atomic(tmp_path):
    first = save_checkpoint(RecordingAccelerator(), tmp_path, TrainingProgress(3, 0, 3, 1))
    assert first == tmp_path / "step_3" and (first / "model.safetensors").is_file()
    assert json.loads((first / PROGRESS_FILE).read_text()) == {
        "completed_steps": 3, "epoch": 0, "batches_in_epoch": 3, "skipped_bad_audio": 1
    }

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(RecordingAccelerator(fail=True), tmp_path, TrainingProgress(6, 1, 2, 1))
    assert (tmp_path / "step_6.tmp" / "model.safetensors").is_file() and not (tmp_path / "step_6").exists()
    assert find_latest_checkpoint(tmp_path) == first

    # The next save of that step clears the leftover and publishes a complete folder.
    assert save_checkpoint(RecordingAccelerator(), tmp_path, TrainingProgress(6, 1, 2, 1)) == tmp_path / "step_6"
    assert not (tmp_path / "step_6.tmp").exists()
    assert TrainingProgress.load(find_latest_checkpoint(tmp_path) / PROGRESS_FILE) == TrainingProgress(6, 1, 2, 1)
    # Saving a step again replaces it whole.
    save_checkpoint(RecordingAccelerator(), tmp_path, TrainingProgress(6, 1, 2, 5))
    assert TrainingProgress.load(tmp_path / "step_6" / PROGRESS_FILE).skipped_bad_audio == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_3", "step_6"]


def make_checkpoints(folder: Path, *steps: int) -> list[Path]:
    for step in steps:
        (folder / f"step_{step}").mkdir(parents=True)
        TrainingProgress(completed_steps=step).save(folder / f"step_{step}" / PROGRESS_FILE)
    return [folder / f"step_{step}" for step in steps]


def test_a_new_run_refuses_a_folder_holding_another_run(tmp_path):
    assert check_run_folder(tmp_path / "new", None) == []
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "step_9.tmp").mkdir()  # an interrupted first save: nothing to resume from
    assert check_run_folder(tmp_path, None) == []

    old = make_checkpoints(tmp_path, 3, 6, 12)
    with pytest.raises(ValueError) as error:
        check_run_folder(tmp_path, None)
    message = str(error.value)
    assert "already holds another run (step_3, step_6, step_12)" in message
    assert "--resume_from_checkpoint latest" in message and "--overwrite_output_dir" in message
    # Resuming it is fine; overwriting hands back what to delete.
    assert check_run_folder(tmp_path, resolve_checkpoint("latest", tmp_path)) == []
    assert check_run_folder(tmp_path, None, overwrite_output_dir=True) == old

    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "model.safetensors").write_text("weights")
    with pytest.raises(ValueError, match=r"another run \(model.safetensors\)"):
        check_run_folder(finished, None)

    # A run stopped before its first checkpoint leaves only its log, which a new run would append to.
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / LOG_FILE).write_text('{"step": 10}\n')
    with pytest.raises(ValueError, match=rf"another run \({LOG_FILE}\)"):
        check_run_folder(stopped, None)
    stale = check_run_folder(stopped, None, overwrite_output_dir=True)
    remove_run_files(stale)
    assert list(stopped.iterdir()) == []


def test_a_resumed_run_refuses_later_checkpoints_it_would_mix_with(tmp_path):
    make_checkpoints(tmp_path, 3, 6, 12)
    with pytest.raises(ValueError, match=r"later checkpoints than .*step_6 \(step_12\)"):
        check_run_folder(tmp_path, tmp_path / "step_6")
    assert check_run_folder(tmp_path, tmp_path / "step_6", overwrite_output_dir=True) == [tmp_path / "step_12"]
    # A checkpoint of another folder continues into this one only if this one holds no other run.
    elsewhere = make_checkpoints(tmp_path / "other", 4)[0]
    with pytest.raises(ValueError, match="step_3, step_6, step_12"):
        check_run_folder(tmp_path, elsewhere)
    assert check_run_folder(tmp_path / "empty", elsewhere) == []


def test_rotation_keeps_the_newest_checkpoints_and_always_the_one_just_written(tmp_path):
    make_checkpoints(tmp_path, 2, 4, 6, 8)
    assert rotate_checkpoints(tmp_path, None) == []
    assert rotate_checkpoints(tmp_path, 2, newest=tmp_path / "step_8") == [tmp_path / "step_2", tmp_path / "step_4"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["step_6", "step_8"]
    # A run resumed from an older step writes a checkpoint below the highest one: that one is still kept.
    make_checkpoints(tmp_path, 5)
    assert rotate_checkpoints(tmp_path, 1, newest=tmp_path / "step_5") == [tmp_path / "step_6", tmp_path / "step_8"]
    assert [path.name for path in tmp_path.iterdir()] == ["step_5"]
    with pytest.raises(ValueError, match="must be >= 1"):
        rotate_checkpoints(tmp_path, 0)


def test_an_interrupted_deletion_leaves_nothing_to_resume_from(tmp_path, monkeypatch):
    import shutil

    from modeling_eat.pretraining import checkpoints

    make_checkpoints(tmp_path, 1, 2)
    real_rmtree = shutil.rmtree

    def killed(path, *args, **kwargs):
        (Path(path) / "model.safetensors").write_text("half deleted")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        remove_run_files([tmp_path / "step_2"])
    assert find_latest_checkpoint(tmp_path) == tmp_path / "step_1"
    monkeypatch.setattr(checkpoints.shutil, "rmtree", real_rmtree)
    rotate_checkpoints(tmp_path, None)  # sweeps the leftover
    assert [path.name for path in tmp_path.iterdir()] == ["step_1"]


class OtherRank(RecordingAccelerator):
    is_main_process = False

    def save_state(self, output_dir):
        Path(output_dir).mkdir(parents=True, exist_ok=True)


def test_save_checkpoint_rotates_and_keeps_each_process_stream_position(tmp_path):
    class MainRank(RecordingAccelerator):
        def save_state(self, output_dir):
            super().save_state(output_dir)
            # Between the barriers the other process writes its part of the same folder.
            save_checkpoint(OtherRank(process_index=1), tmp_path, progress, stream_position=other_position)

    for step in (1, 2, 3):
        progress = TrainingProgress(completed_steps=step)
        other_position = StreamPosition(epoch=0, batches_in_epoch=step, worker_positions={0: 2 * step + 1})
        position = StreamPosition(epoch=0, batches_in_epoch=step, worker_positions={0: 2 * step})
        save_checkpoint(MainRank(), tmp_path, progress, total_limit=2, stream_position=position)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["step_2", "step_3"]
    latest = find_latest_checkpoint(tmp_path)
    assert load_stream_position(latest, 1, 2) == StreamPosition(0, 3, {0: 7})
    assert load_stream_position(latest, 0, 2).worker_positions == {0: 6}
    with pytest.raises(ValueError, match="streaming run of 2 processes; this one has 4"):
        load_stream_position(latest, 0, 4)
    save_checkpoint(RecordingAccelerator(), tmp_path / "map", TrainingProgress(completed_steps=1))
    with pytest.raises(ValueError, match="saved by a run without --streaming"):
        load_stream_position(tmp_path / "map" / "step_1", 0, 1)


def test_zero3_fsdp_and_half_precision_teachers_are_refused():
    def accelerator(zero_stage=None, fsdp=None):
        plugin = SimpleNamespace(zero_stage=zero_stage) if zero_stage is not None else None
        return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin, fsdp_plugin=fsdp))

    check_supported_distributed_setup(accelerator())
    check_supported_distributed_setup(accelerator(zero_stage=2))
    with pytest.raises(ValueError, match="ZeRO-3 is not supported"):
        check_supported_distributed_setup(accelerator(zero_stage=3))
    with pytest.raises(ValueError, match="FSDP shards"):
        check_supported_distributed_setup(accelerator(fsdp=object()))

    model = EATForPreTraining(EATConfig.from_preset("tiny"))
    check_teacher_precision(model)
    # The teacher keeps fp32 through `.to()` and `.half()`; a cast of the tensors themselves still reaches it.
    for parameter in model.teacher.parameters():
        parameter.data = parameter.data.bfloat16()
    with pytest.raises(ValueError, match="EMA update needs float32"):
        check_teacher_precision(model)
