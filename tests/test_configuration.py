"""Tests for EATConfig: serialisation, presets, validation and the objective-dependent masking defaults."""

import json
import logging

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

from modeling_eat import EATConfig, EATForAudioClassification, EATForPreTraining, EATModel
from modeling_eat.configuration_eat import AUTO_MAP
from modeling_eat.loading_eat import HUB_PORT_FC_NORM_EPS, audioset_id2label


def test_json_string_round_trip_keeps_every_field():
    config = EATConfig.from_preset("tiny", max_length=64, classifier_pooling="mean", mask_ratio=0.6)
    restored = EATConfig.from_dict(json.loads(config.to_json_string()))
    assert restored.to_dict() == config.to_dict()
    assert (restored.hidden_size, restored.max_length, restored.classifier_pooling) == (64, 64, "mean")
    assert restored.mask_ratio == 0.6


def test_saved_folder_round_trip(tmp_path):
    config = EATConfig.from_preset(
        "tiny", max_length=64, id2label={0: "yes", 1: "no"}, label2id={"yes": 0, "no": 1}, drop_path_rate=0.1
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "eat"
    assert saved["auto_map"] == AUTO_MAP
    restored = EATConfig.from_pretrained(tmp_path)
    assert restored.to_dict() == config.to_dict()
    assert restored.id2label == {0: "yes", 1: "no"}
    assert restored.num_labels == 2


def test_auto_map_lists_all_five_auto_classes():
    assert set(EATConfig().auto_map) == {
        "AutoConfig",
        "AutoFeatureExtractor",
        "AutoModel",
        "AutoModelForAudioClassification",
        "AutoModelForPreTraining",
    }


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("base", (768, 12, 12, 3072)),
        ("large", (1024, 24, 16, 4096)),
        ("tiny", (64, 3, 4, 256)),
    ],
)
def test_presets_have_the_documented_sizes(name, sizes):
    config = EATConfig.from_preset(name)
    assert (
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.intermediate_size,
    ) == sizes
    # The teacher's layers and the decoders' widths follow the encoder unless set (see the tests below).
    assert config.average_top_k_layers is None and config.decoder_hidden_size is None


def test_default_config_is_the_base_preset():
    assert EATConfig().to_dict() == EATConfig.from_preset("base").to_dict()


def test_large_preset_uses_its_own_recipe():
    config = EATConfig.from_preset("large")
    assert (config.decoder_kernel_size, config.decoder_num_layers, config.mask_ratio) == (5, 3, 0.75)


def test_preset_overrides_win():
    config = EATConfig.from_preset("large", num_hidden_layers=2, average_top_k_layers=2)
    assert config.num_hidden_layers == 2 and config.hidden_size == 1024


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match=r"Unknown EAT preset 'huge'.*base.*large.*tiny"):
        EATConfig.from_preset("huge")


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"hidden_size": 66}, "num_attention_heads"),
        ({"hidden_size": 18, "num_attention_heads": 3}, "multiple of 4"),
        ({"num_mel_bins": 120}, "num_mel_bins"),
        ({"max_length": 100}, "max_length"),
        ({"max_length": 16 * 769}, "positional table"),
        ({"classifier_pooling": "max"}, "classifier_pooling"),
        ({"pretraining_objective": "mae"}, "pretraining_objective"),
        ({"ema_decay": 1.5}, "ema_decay"),
        ({"drop_path_rate": -0.1}, "drop_path_rate"),
    ],
)
def test_impossible_settings_raise_at_construction_naming_the_field(overrides, field):
    # transformers' strict dataclass configs wrap the validator's ValueError; the message keeps its text.
    with pytest.raises(StrictDataclassClassValidationError, match=field) as error:
        EATConfig.from_preset("tiny", **overrides)
    assert isinstance(error.value.__cause__, ValueError)


def test_loading_an_invalid_saved_config_raises(tmp_path):
    config = EATConfig.from_preset("tiny")
    data = config.to_dict()
    data["classifier_pooling"] = "max"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(StrictDataclassClassValidationError, match="classifier_pooling"):
        EATConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "objective, strategy, ratio, clones",
    [("eat", "inverse_block", 0.8, 16), ("maskspec", "random", 0.75, 1)],
)
def test_masking_defaults_follow_the_objective(objective, strategy, ratio, clones):
    config = EATConfig(pretraining_objective=objective)
    assert (config.mask_strategy, config.mask_ratio, config.clone_batch) == (strategy, ratio, clones)


def test_explicit_masking_settings_override_the_objective_defaults():
    config = EATConfig(pretraining_objective="maskspec", mask_strategy="inverse_block", clone_batch=4)
    assert (config.mask_strategy, config.mask_ratio, config.clone_batch) == ("inverse_block", 0.75, 4)


def test_objective_defaults_survive_a_round_trip(tmp_path):
    EATConfig(pretraining_objective="maskspec").save_pretrained(tmp_path)
    restored = EATConfig.from_pretrained(tmp_path)
    assert (restored.mask_strategy, restored.mask_ratio, restored.clone_batch) == ("random", 0.75, 1)


def test_num_freq_patches():
    assert EATConfig().num_freq_patches == 8
    assert EATConfig(num_mel_bins=64).num_freq_patches == 4


def test_from_name_or_path_takes_presets_json_files_and_folders(tmp_path):
    assert EATConfig.from_name_or_path("tiny").to_dict() == EATConfig.from_preset("tiny").to_dict()
    assert EATConfig.from_name_or_path("small", hidden_size=96).hidden_size == 96
    EATConfig.from_preset("tiny", num_hidden_layers=2, average_top_k_layers=2).to_json_file(tmp_path / "c.json")
    assert EATConfig.from_name_or_path(tmp_path / "c.json").num_hidden_layers == 2
    EATConfig.from_preset("tiny", hidden_size=32).save_pretrained(tmp_path / "folder")
    assert EATConfig.from_name_or_path(str(tmp_path / "folder")).hidden_size == 32
    with pytest.raises(ValueError, match=r"'huge' is neither a size preset \(base, large, small, tiny\)"):
        EATConfig.from_name_or_path("huge")


# ---------------------------------------------------------------------------------------------------------------------
# Small configs, the transformers way: pre-training fields follow the encoder and are checked where they are used


@pytest.mark.parametrize(
    "make_config",
    [
        lambda: EATConfig(num_hidden_layers=2),
        lambda: EATConfig(hidden_size=24, num_attention_heads=4),
        lambda: EATConfig.from_preset("tiny", num_hidden_layers=2),
        lambda: EATConfig.from_preset("large", num_hidden_layers=2),
    ],
    ids=["2 layers", "24 wide", "tiny preset, 2 layers", "large preset, 2 layers"],
)
def test_small_configs_construct_and_save(make_config, tmp_path):
    config = make_config()
    config.save_pretrained(tmp_path)
    assert EATConfig.from_pretrained(tmp_path).to_dict() == config.to_dict()


def test_a_depth_set_after_construction_saves_and_the_teacher_follows_it(tmp_path):
    config = EATConfig.from_preset("tiny")
    config.num_hidden_layers = 2
    config.save_pretrained(tmp_path)
    model = EATForPreTraining(EATConfig.from_pretrained(tmp_path))
    assert len(model.eat.layers) == 2 and model.teacher.num_target_layers == 2


def test_pretraining_sizes_default_relative_to_the_encoder():
    config = EATConfig.from_preset("tiny", hidden_size=32, num_hidden_layers=2)
    model = EATForPreTraining(config)
    assert model.teacher.num_target_layers == 2
    assert model.decoder.hidden_size == 32
    assert model.decoder.projection.weight.shape == (32, 32)
    maskspec = EATForPreTraining(EATConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
                                           pretraining_objective="maskspec"))
    # min(512, 32) wide, 64-wide heads (so one head of 32), a 4x MLP
    assert maskspec_decoder_sizes(maskspec) == (32, 32, 128)
    # The Base defaults are unchanged: a 512-wide MaskSpec decoder with 8 heads of 64 and a 2048 MLP.
    with torch.device("meta"):
        base = EATForPreTraining(EATConfig(pretraining_objective="maskspec"))
    assert maskspec_decoder_sizes(base) == (512, 64, 2048)


def maskspec_decoder_sizes(model) -> tuple[int, int, int]:
    layer = model.decoder.layers[0]
    return layer.attention.qkv_proj.in_features, layer.attention.head_dim, layer.mlp.fc1.out_features


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"average_top_k_layers": 4}, r"average_top_k_layers \(4\) must lie in \[1, num_hidden_layers = 3\]"),
        ({"decoder_kernel_size": 4}, "decoder_kernel_size must be odd"),
        ({"decoder_groups": 5}, r"decoder_groups \(5\) must divide hidden_size \(64\)"),
        ({"hidden_size": 24, "num_attention_heads": 4}, r"decoder_groups \(16\) must divide hidden_size \(24\)"),
        ({"pretraining_objective": "maskspec", "maskspec_decoder_num_attention_heads": 5},
         r"maskspec_decoder_hidden_size \(64\) must be a multiple of maskspec_decoder_num_attention_heads \(5\)"),
    ],
)
def test_pretraining_settings_are_checked_when_the_pretraining_model_is_built(overrides, message):
    config = EATConfig.from_preset("tiny", **overrides)  # takes them: nothing here uses them
    EATModel(config)
    EATForAudioClassification(config)
    with pytest.raises(ValueError, match=message):
        EATForPreTraining(config)


def test_pretraining_settings_of_the_other_objective_are_not_checked():
    EATForPreTraining(EATConfig.from_preset("tiny", decoder_groups=5, pretraining_objective="maskspec"))
    EATForPreTraining(EATConfig.from_preset("tiny", maskspec_decoder_num_attention_heads=5))


# ---------------------------------------------------------------------------------------------------------------------
# The config.json of the hub's remote-code port (worstchan/EAT-*) is translated


@pytest.fixture(scope="module")
def hub_port_config(fixtures_dir) -> dict:
    return json.loads((fixtures_dir / "eat_reference" / "hub_port_finetune_tiny" / "config.json").read_text())


def test_hub_port_config_is_translated(fixtures_dir, hub_port_config, tmp_path):
    config = EATConfig.from_pretrained(fixtures_dir / "eat_reference" / "hub_port_finetune_tiny")
    sizes = (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size)
    assert sizes == (64, 3, 4, 256)
    # The port's max_length counts rows of patches (our max_time_patches); img_size[0] is the input's frames.
    assert (config.max_time_patches, config.max_length, config.num_mel_bins, config.patch_size) == (768, 256, 128, 16)
    assert (config.layer_norm_eps, config.fc_norm_eps, config.num_labels, config.qkv_bias) == (1e-6, 1e-5, 10, True)
    # Saved, it is ours: none of the port's names, and reading it back changes nothing.
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert not {"embed_dim", "depth", "num_heads", "mel_bins", "img_size", "model_variant"} & set(saved)
    assert EATConfig.from_pretrained(tmp_path).to_dict() == config.to_dict()
    assert EATConfig.from_name_or_path(fixtures_dir / "eat_reference" / "hub_port_finetune_tiny" / "config.json"
                                       ).hidden_size == 64


def test_hub_port_defaults_and_audioset_heads(hub_port_config):
    # A file that leaves fields out gets the port's defaults: EAT-Base, positions for 768 rows of patches, 10 s.
    base = EATConfig.from_dict({"model_type": "eat", "embed_dim": 768})
    assert (base.num_hidden_layers, base.num_attention_heads, base.intermediate_size) == (12, 12, 3072)
    assert (base.max_time_patches, base.max_length, base.fc_norm_eps) == (768, 1024, None)
    # The official fine-tuned heads: AudioSet's 527 classes, named, several per clip.
    audioset = EATConfig.from_dict({**hub_port_config, "num_classes": 527})
    assert audioset.id2label == audioset_id2label()
    assert audioset.problem_type == "multi_label_classification"
    assert audioset.fc_norm_eps == HUB_PORT_FC_NORM_EPS
    # The pre-training variant has no head: its num_classes is not a label count.
    pretrain = EATConfig.from_dict({**hub_port_config, "model_variant": "pretrain"})
    assert pretrain.num_labels == 2 and pretrain.fc_norm_eps is None


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("layer_norm_first", True, "pre-LN"),
        ("in_chans", 3, "in_chans=3"),
        ("stride", 10, "stride=10 differs from patch_size=16"),
        ("norm_affine", False, "norm_affine=False"),
        ("fixed_positions", False, "learned positions"),
    ],
)
def test_hub_port_settings_eat_does_not_implement_are_refused(hub_port_config, field, value, message):
    with pytest.raises(ValueError, match=message):
        EATConfig.from_dict({**hub_port_config, field: value})


def test_hub_port_dropouts_are_named_when_left_out(hub_port_config, caplog):
    with caplog.at_level(logging.WARNING, logger="modeling_eat.configuration_eat"):
        config = EATConfig.from_dict({**hub_port_config, "end_drop_path_rate": 0.1})
    assert "end_drop_path_rate=0.1" in caplog.text and config.drop_path_rate == 0.0


def test_hub_port_field_names_passed_directly_name_the_translation():
    with pytest.raises(ValueError, match=r"embed_dim.*EATConfig\.from_dict\(hub_config\)"):
        EATConfig(embed_dim=64)
