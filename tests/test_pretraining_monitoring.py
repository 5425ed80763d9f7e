"""What a pre-training run watches (modeling_eat/pretraining/monitoring.py): the EMA teacher's horizon against the
run's length, the schedule the teacher fits to short runs, collapsed targets, and the run's log."""

import pytest
import torch

from modeling_eat import EATConfig, EATForPreTraining, EATTeacher
from modeling_eat.modeling_eat import ema_decay_schedule, ema_schedule, position_share
from modeling_eat.pretraining.monitoring import (
    POSITIONAL_TARGET_SHARE,
    append_log,
    collapse_warning,
    drop_log_rows_after,
    initial_weight_share,
    read_log,
    teacher_horizon_warning,
)

from eat_testing import build


def teacher_of(preset: str = "tiny", **overrides) -> EATTeacher:
    return EATTeacher(EATConfig.from_preset(preset, **overrides))


# The official Base schedule, on a tiny encoder.
BASE_SCHEDULE = {"ema_scale_with_run": False, "ema_decay": 0.9998, "ema_end_decay": 0.99999,
                 "ema_anneal_end_step": 100_000}


def test_initial_weight_share_is_the_product_of_the_decays():
    # A slow fixed schedule, 0.999 -> 0.9999 over 1,000 updates: after 300 updates 77% of the teacher is still its
    # random initialisation.
    teacher = teacher_of(ema_scale_with_run=False, ema_decay=0.999, ema_end_decay=0.9999, ema_anneal_end_step=1000)
    assert initial_weight_share(teacher, 300) == pytest.approx(0.771, abs=1e-3)
    assert initial_weight_share(teacher, 0) == 1.0
    constant = teacher_of(ema_scale_with_run=False, ema_decay=0.99, ema_end_decay=0.99, ema_anneal_end_step=1)
    assert initial_weight_share(constant, 100) == pytest.approx(0.99**100)


def test_the_teacher_fits_its_schedule_to_the_run_it_is_told_of():
    teacher = teacher_of("small")
    teacher.fit_schedule_to_run(600)
    # A horizon of the run at the start, ten runs at the end, annealed over the run.
    assert ema_schedule(teacher.config, teacher.run_length) == pytest.approx((1 - 1 / 600, 1 - 1 / 6000, 600))
    assert float(teacher.ema_decay(0)) == 1 - 1 / 600 and float(teacher.ema_decay(600)) == 1 - 1 / 6000
    # The config is not rewritten: it still says what the schedule is made of.
    assert (teacher.config.ema_decay, teacher.config.ema_scale_with_run) == (0.9998, True)
    assert teacher_horizon_warning(teacher, 600) is None
    # The teacher keeps about half of its initialisation, the schedule that taught best in short runs.
    assert 0.4 < initial_weight_share(teacher, 600) < 0.7
    one_update = teacher_of()
    one_update.fit_schedule_to_run(1)
    assert ema_schedule(one_update.config, 1)[::2] == (0.0, 1)  # a horizon is at least one update

    official = teacher_of(**BASE_SCHEDULE)
    official.fit_schedule_to_run(1000)
    assert ema_schedule(official.config, official.run_length) == (0.9998, 0.99999, 100000)


def test_the_fitted_schedule_gives_the_decays_of_the_config_it_replaces():
    # Before the teacher owned it, the run wrote these three fields into the config; the decays are the same bits.
    teacher = teacher_of()
    teacher.fit_schedule_to_run(300)
    rewritten = EATConfig.from_preset("tiny", ema_scale_with_run=False, ema_decay=1.0 - 1.0 / 300,
                                      ema_end_decay=1.0 - 1.0 / 3000, ema_anneal_end_step=300)
    steps = torch.arange(400)
    assert torch.equal(teacher.ema_decay(steps), ema_decay_schedule(rewritten, steps))


def test_teacher_horizon_longer_than_the_run_is_warned_about():
    base = teacher_of(**BASE_SCHEDULE)
    base.fit_schedule_to_run(1000)
    warning = teacher_horizon_warning(base, 1000)
    assert "~5000 updates" in warning and "longer than the run's 1000" in warning and "ema_scale_with_run" in warning
    assert "82% of its random initialisation" in warning
    assert teacher_horizon_warning(base, 10_000) is None
    scaled = teacher_of()
    scaled.fit_schedule_to_run(300)
    assert teacher_horizon_warning(scaled, 300) is None
    assert teacher_horizon_warning(None, 10) is None  # MaskSpec has no teacher


def test_collapse_warnings_name_the_statistic():
    assert collapse_warning(0.7) is None and collapse_warning(0.7, 0.8) is None
    assert "collapsed" in collapse_warning(0.01) and "target_std" in collapse_warning(0.01)
    positional = collapse_warning(0.98, 0.93)
    assert "position codes" in positional and "93%" in positional and "ema_decay" in positional


def test_positional_warning_weighs_the_share_against_the_runs_start():
    # A random teacher on padded crops: 92% positional at the first step, and no more since. No warning.
    assert collapse_warning(0.98, 0.92, initial_position_share=0.92) is None
    assert collapse_warning(0.98, 0.95, initial_position_share=0.92) is None  # 8% of the rest -> 5%: not halved
    drifted = collapse_warning(0.98, 0.93, initial_position_share=0.50)
    assert "position codes" in drifted and "against 50% at the run's start" in drifted
    assert "position codes" in collapse_warning(0.98, 0.97, initial_position_share=0.92)  # 8% -> 3%: below half
    assert collapse_warning(0.98, 0.85, initial_position_share=0.2) is None  # under the threshold, however it rose
    # A collapse of the spread is a collapse whatever the start.
    assert "collapsed" in collapse_warning(0.01, 0.5, initial_position_share=0.5)


def test_a_random_teachers_targets_on_padded_crops_are_positional_without_a_warning():
    # Clips of 0.1 s in crops of 16 patch rows: most patches are padding, the same at every position.
    model = build(EATForPreTraining).eval()
    inputs = torch.full((4, 256, 128), -1.0)
    inputs[:, :10] += torch.randn(4, 10, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        share = float(model(inputs).target_position_share)
    assert share > POSITIONAL_TARGET_SHARE
    assert collapse_warning(1.0, share) is not None  # the uncalibrated test fires at the first step
    assert collapse_warning(1.0, share, initial_position_share=share) is None


def test_position_share_separates_position_codes_from_content():
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(16, 48, 32, generator=generator)
    position = torch.randn(1, 48, 32, generator=generator).expand(16, -1, -1)
    assert float(position_share(content)) < 0.05  # independent clips: nothing positional, once 1/n is removed
    assert float(position_share(position)) == pytest.approx(1.0)
    mixed = float(position_share(content + 2 * position))  # 4 parts position to 1 part content
    assert mixed == pytest.approx(0.8, abs=0.05)
    assert float(position_share(content[:1])) == pytest.approx(1.0)


def test_pretraining_outputs_report_the_position_share():
    model = build(EATForPreTraining).eval()
    with torch.no_grad():
        inputs = torch.randn(4, 128, 128, generator=torch.Generator().manual_seed(1))
        out = model(inputs)
        frame_targets, _ = model.teacher(inputs)
    assert torch.equal(out.target_position_share, position_share(frame_targets))


def test_teacher_distance_grows_as_the_student_moves_away():
    model = build(EATForPreTraining)
    assert float(model.teacher.distance_to(model.eat)) == 0.0
    with torch.no_grad():
        for parameter in model.eat.parameters():
            parameter.mul_(1.1)
    # Every weight 10% larger than the teacher's copy: ||0.1 w|| / ||1.1 w||.
    assert float(model.teacher.distance_to(model.eat)) == pytest.approx(0.1 / 1.1, rel=1e-5)


def test_log_appends_one_line_per_step(tmp_path):
    append_log(tmp_path, {"step": 1, "loss": 2.0})
    append_log(tmp_path, {"step": 2, "loss": 1.5})
    assert read_log(tmp_path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    assert read_log(tmp_path / "missing") == []


def test_a_resumed_run_drops_the_rows_it_replays(tmp_path):
    # Logged every 2 steps, checkpointed at step 4, killed after logging step 8: the resumed run replays 5-8.
    for step in (2, 4, 6, 8):
        append_log(tmp_path, {"step": step, "loss": 10.0 - step})
    assert drop_log_rows_after(tmp_path, 4) == 2
    assert [row["step"] for row in read_log(tmp_path)] == [2, 4]
    for step in (6, 8):
        append_log(tmp_path, {"step": step, "loss": 0.5})
    assert [(row["step"], row["loss"]) for row in read_log(tmp_path)] == [(2, 8.0), (4, 6.0), (6, 0.5), (8, 0.5)]
    assert drop_log_rows_after(tmp_path, 8) == 0 and drop_log_rows_after(tmp_path / "missing", 0) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pretraining_log.jsonl"]
