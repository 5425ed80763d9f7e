"""What a pre-training run watches (modeling_eat/pretraining/monitoring.py): the EMA teacher's horizon against the
run's length, the schedule scaled to short runs, collapsed targets, and the run's log."""

import pytest
import torch

from modeling_eat import EATConfig, EATForPreTraining
from modeling_eat.modeling_eat import position_share
from modeling_eat.pretraining.monitoring import (
    append_log,
    collapse_warning,
    initial_weight_share,
    read_log,
    scale_ema_to_run,
    teacher_horizon_warning,
)

from eat_testing import build


def test_initial_weight_share_is_the_product_of_the_decays():
    # A slow fixed schedule, 0.999 -> 0.9999 over 1,000 updates: after 300 updates 77% of the teacher is still its
    # random initialisation.
    config = EATConfig.from_preset("tiny", ema_decay=0.999, ema_end_decay=0.9999, ema_anneal_end_step=1000)
    assert initial_weight_share(config, 300) == pytest.approx(0.771, abs=1e-3)
    assert initial_weight_share(config, 0) == 1.0
    constant = EATConfig.from_preset("tiny", ema_decay=0.99, ema_end_decay=0.99, ema_anneal_end_step=1)
    assert initial_weight_share(constant, 100) == pytest.approx(0.99**100)


def test_scaled_schedule_spans_the_run():
    short = EATConfig.from_preset("small")
    scale_ema_to_run(short, 600)
    # A horizon of the run at the start, ten runs at the end, annealed over the run.
    assert (short.ema_decay, short.ema_end_decay, short.ema_anneal_end_step) == pytest.approx(
        (1 - 1 / 600, 1 - 1 / 6000, 600)
    )
    assert teacher_horizon_warning(short, 600) is None
    # The teacher keeps about half of its initialisation, the schedule that taught best in short runs.
    assert 0.4 < initial_weight_share(short, 600) < 0.7
    tiny_run = EATConfig.from_preset("tiny")
    scale_ema_to_run(tiny_run, 1)
    assert (tiny_run.ema_decay, tiny_run.ema_anneal_end_step) == (0.0, 1)  # a horizon is at least one update

    untouched = EATConfig()
    scale_ema_to_run(untouched, 1000)
    assert (untouched.ema_decay, untouched.ema_end_decay, untouched.ema_anneal_end_step) == (0.9998, 0.99999, 100000)


def test_teacher_horizon_longer_than_the_run_is_warned_about():
    base = EATConfig()
    warning = teacher_horizon_warning(base, 1000)
    assert "~5000 updates" in warning and "longer than the run's 1000" in warning and "ema_scale_with_run" in warning
    assert "82% of its random initialisation" in warning
    assert teacher_horizon_warning(base, 10_000) is None
    scaled = EATConfig.from_preset("tiny")
    scale_ema_to_run(scaled, 300)
    assert teacher_horizon_warning(scaled, 300) is None
    assert teacher_horizon_warning(EATConfig(pretraining_objective="maskspec"), 10) is None


def test_collapse_warnings_name_the_statistic():
    assert collapse_warning(0.7) is None and collapse_warning(0.7, 0.8) is None
    assert "collapsed" in collapse_warning(0.01) and "target_std" in collapse_warning(0.01)
    positional = collapse_warning(0.98, 0.93)
    assert "position codes" in positional and "93%" in positional and "ema_decay" in positional


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
