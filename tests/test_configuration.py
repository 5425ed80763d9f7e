"""Tests for EATConfig: serialisation, presets, validation and the objective-dependent masking defaults."""

import json

import pytest
from huggingface_hub.errors import StrictDataclassClassValidationError

from modeling_eat import EATConfig
from modeling_eat.configuration_eat import AUTO_MAP


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
    assert config.average_top_k_layers == config.num_hidden_layers


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
        ({"num_mel_bins": 120}, "num_mel_bins"),
        ({"max_length": 100}, "max_length"),
        ({"max_length": 16 * 769}, "positional table"),
        ({"decoder_kernel_size": 4}, "decoder_kernel_size"),
        ({"decoder_groups": 5}, "decoder_groups"),
        ({"average_top_k_layers": 4}, "average_top_k_layers"),
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
    data["decoder_kernel_size"] = 2
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(StrictDataclassClassValidationError, match="decoder_kernel_size"):
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
