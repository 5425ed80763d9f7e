"""The pre-training run's settings and checkpoints (modeling_eat/pretraining/settings.py, checkpoints.py): the
config resolver, the refused distributed set-ups, and atomic, resumable checkpoints."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from modeling_eat import EATConfig, EATForPreTraining
from modeling_eat.pretraining.checkpoints import (
    PROGRESS_FILE,
    TrainingProgress,
    find_latest_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
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

    def __init__(self, fail: bool = False):
        self.fail = fail

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
