"""The optimizer parameter-group rules (modeling_eat/optimization.py): weight decay on matrices only, the teacher
left out, and fine-tuning's layer-wise learning-rate decay."""

import pytest

from modeling_eat import EATForAudioClassification, EATForPreTraining
from modeling_eat.optimization import (
    PRETRAINING_WARMUP_FRACTION,
    layer_decay_parameter_groups,
    optimizer_param_groups,
    warmup_steps_of,
)

from eat_testing import build


def test_param_groups_exclude_biases_norms_and_the_teacher():
    model = build(EATForPreTraining)
    decay, no_decay = optimizer_param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "eat.layers.0.attention.qkv_proj.weight" in decay_names
    assert "eat.embeddings.patch_embeddings.projection.weight" in decay_names
    assert {"eat.layers.0.attention.qkv_proj.bias", "eat.layers.0.attention_norm.weight"} <= no_decay_names
    assert all(n.endswith(".bias") or model.get_parameter(n).ndim == 1 for n in no_decay_names)
    assert not any(n.startswith("teacher.") for n in decay_names | no_decay_names)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decay_names | no_decay_names == trainable and not decay_names & no_decay_names


def test_layer_decay_groups_scale_blocks_and_leave_the_rest_at_one():
    model = build(EATForAudioClassification, num_labels=4)
    num_blocks = model.config.num_hidden_layers
    groups = layer_decay_parameter_groups(model, learning_rate=1e-3, weight_decay=0.05, layer_decay=0.65)
    seen = {}
    for group in groups:
        assert group["lr"] == pytest.approx(1e-3 * group["lr_scale"])
        for name, param in zip(group["names"], group["params"]):
            seen[name] = (group["lr_scale"], group["weight_decay"], param)
    assert set(seen) == {name for name, _ in model.named_parameters()}
    for name, (scale, decay, param) in seen.items():
        if name.startswith("eat.layers."):
            block = int(name.split(".")[2])
            assert scale == pytest.approx(0.65 ** (num_blocks - block)), name
        else:
            assert scale == 1.0, name
        assert decay == (0.0 if param.ndim == 1 or name.endswith(".bias") else 0.05), name
    outside = {"eat.embeddings.patch_embeddings.projection.weight", "eat.embeddings.cls_token",
               "eat.embeddings.layer_norm.weight", "fc_norm.weight", "classifier.weight", "classifier.bias"}
    assert outside <= set(seen)
    assert seen["eat.embeddings.cls_token"][1] == 0.05  # (1, 1, D): decayed, as in the official code
    assert seen["eat.layers.0.mlp.fc1.weight"][0] == pytest.approx(0.65**3)
    assert seen["eat.layers.2.attention.qkv_proj.weight"][0] == pytest.approx(0.65)


def test_layer_decay_skips_frozen_parameters():
    model = build(EATForAudioClassification, num_labels=4)
    model.freeze_feature_encoder()
    names = {name for group in layer_decay_parameter_groups(model, 1e-3, 0.05, 0.65) for name in group["names"]}
    assert not any(name.startswith("eat.embeddings.patch_embeddings") for name in names)
    assert "eat.embeddings.cls_token" in names


def test_warmup_is_a_step_count_or_a_share_of_the_run():
    assert warmup_steps_of(500, 10_000) == 500
    assert warmup_steps_of(PRETRAINING_WARMUP_FRACTION, 400_000) == 53_333  # the official run
    assert warmup_steps_of(PRETRAINING_WARMUP_FRACTION, 300) == 40
    assert warmup_steps_of(0.0, 300) == 0
    with pytest.raises(ValueError, match="fraction of the run"):
        warmup_steps_of(-1, 300)
