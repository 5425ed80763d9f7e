"""`from_pretrained` as transformers users expect it: folders in the layout of the hub's remote-code port (the
official `worstchan/EAT-*` repositories, ../shared/fixtures/eat_reference/hub_port_finetune_tiny) load without the
converter; a checkpoint without the encoder's weights loads as transformers' contract says (initialised, listed in
the loading info) with a loud warning naming its layout and the fix, never as a silent random encoder; and the parts
one EAT class has and another's checkpoint lacks are named in one line, not in transformers' LOAD REPORT table."""

import json
import logging
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForAudioClassification, AutoModelForPreTraining

from modeling_eat import EATForAudioClassification, EATForPreTraining, EATModel
from modeling_eat.configuration_eat import AUTO_MAP
from modeling_eat.conversion import convert_checkpoint

from eat_testing import FIXTURE_TOLERANCE, HEAD_KEYS, build, max_error


@pytest.fixture(scope="module")
def hub_port_dir(fixtures_dir):
    return fixtures_dir / "eat_reference" / "hub_port_finetune_tiny"


@pytest.fixture(scope="module")
def reference(fixtures_dir) -> dict[str, torch.Tensor]:
    return load_file(fixtures_dir / "eat_reference" / "reference_outputs.safetensors")


class LogRecorder(logging.Handler):
    """Every message transformers and this package log while it is installed (transformers at warning level)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []
        self.loggers = [transformers.utils.logging.get_logger("transformers"), logging.getLogger("modeling_eat")]

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.verbosity = transformers.utils.logging.get_verbosity()
        transformers.utils.logging.set_verbosity_warning()
        for logger in self.loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        for logger in self.loggers:
            logger.removeHandler(self)
        transformers.utils.logging.set_verbosity(self.verbosity)


# ---------------------------------------------------------------------------------------------------------------------
# the hub port's folders


def test_hub_port_folder_reproduces_the_reference_through_the_auto_class(hub_port_dir, reference):
    with LogRecorder() as log:
        model = AutoModelForAudioClassification.from_pretrained(hub_port_dir)
    assert type(model) is EATForAudioClassification
    assert not any("LOAD REPORT" in message for message in log.messages), log.messages
    assert model.fc_norm.eps == 1e-5  # the port's head, as it computes it
    with torch.no_grad():
        # Measured 1.4e-6: the fixture's logits were made with the official head's eps 1e-6.
        assert max_error(model(reference["input"]).logits, reference["student_logits"]) < FIXTURE_TOLERANCE
        hidden = model.eat(reference["input"]).last_hidden_state
        assert max_error(hidden, reference["student_last_hidden_state"]) < FIXTURE_TOLERANCE
        short = model.eat(reference["input_short"]).last_hidden_state
        assert max_error(short, reference["student_last_hidden_state_short"]) < FIXTURE_TOLERANCE


@pytest.mark.parametrize("load", [AutoModel.from_pretrained, EATModel.from_pretrained], ids=["AutoModel", "EATModel"])
def test_hub_port_encoder_loads_and_leaves_the_head_in_one_line(hub_port_dir, reference, load):
    with LogRecorder() as log:
        encoder, info = load(hub_port_dir, output_loading_info=True)
    assert type(encoder) is EATModel
    assert info["missing_keys"] == set() and info["unexpected_keys"] == HEAD_KEYS
    unused = [message for message in log.messages if "classifier.weight" in message]
    assert len(unused) == 1 and "not used: the classification head" in unused[0], log.messages
    assert not any("LOAD REPORT" in message for message in log.messages), log.messages
    with torch.no_grad():
        hidden = encoder(reference["input"]).last_hidden_state
    assert max_error(hidden, reference["student_last_hidden_state"]) < FIXTURE_TOLERANCE


def test_pretraining_model_from_the_hub_port_copies_the_student_into_the_teacher(hub_port_dir, reference):
    model = AutoModelForPreTraining.from_pretrained(hub_port_dir, clone_batch=2)
    assert type(model) is EATForPreTraining
    with torch.no_grad():
        assert max_error(model.eat(reference["input"]).last_hidden_state, reference["student_last_hidden_state"]) \
            < FIXTURE_TOLERANCE
    for teacher, student in zip(model.teacher.encoder.parameters(), model.eat.parameters()):
        assert torch.equal(teacher, student)


def test_a_hub_port_folder_loaded_natively_saves_in_this_packages_layout(hub_port_dir, reference, tmp_path):
    model = EATForAudioClassification.from_pretrained(hub_port_dir)
    model.save_pretrained(tmp_path / "saved")
    keys = set(load_file(tmp_path / "saved" / "model.safetensors"))
    assert keys == set(model.state_dict())
    assert all(key.startswith(("eat.", "fc_norm.", "classifier.")) for key in keys)
    saved_config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved_config["hidden_size"] == 64 and "embed_dim" not in saved_config
    assert saved_config["fc_norm_eps"] == 1e-5
    reloaded, info = EATForAudioClassification.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not any(info[name] for name in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    with torch.no_grad():
        assert torch.equal(reloaded(reference["input"]).logits, model(reference["input"]).logits)


def test_native_loading_and_the_converter_share_one_translation(hub_port_dir, reference, tmp_path):
    convert_checkpoint(hub_port_dir, tmp_path / "converted")
    converted = EATForAudioClassification.from_pretrained(tmp_path / "converted")
    native = EATForAudioClassification.from_pretrained(hub_port_dir)
    for name in ("hidden_size", "num_hidden_layers", "intermediate_size", "max_length", "max_time_patches",
                 "fc_norm_eps", "num_labels"):
        assert getattr(converted.config, name) == getattr(native.config, name), name
    with torch.no_grad():
        assert torch.equal(converted(reference["input"]).logits, native(reference["input"]).logits)


def test_trust_remote_code_on_the_ports_auto_map_stays_transformers(hub_port_dir, reference, tmp_path):
    # The real repositories name their own code in `auto_map`. With this package imported, its registered classes
    # are explicit local code, which transformers prefers even under trust_remote_code=True: the repository's
    # files (here stand-ins that fail when imported) never run.
    folder = tmp_path / "port_with_code"
    shutil.copytree(hub_port_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_eat.EATConfig", "AutoModel": "modeling_eat.EATModel"}
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("configuration_eat.py", "modeling_eat.py"):
        (folder / name).write_text('raise RuntimeError("the repository\'s own code ran")\n')
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert type(model) is EATModel
    with torch.no_grad():
        hidden = model(reference["input"]).last_hidden_state
    assert max_error(hidden, reference["student_last_hidden_state"]) < FIXTURE_TOLERANCE
    # Saved, the folder names this package's code (which it carries), not the port's, which reads another layout.
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["auto_map"] == AUTO_MAP
    assert (tmp_path / "saved" / "modeling_eat.py").read_text() != (folder / "modeling_eat.py").read_text()


# ---------------------------------------------------------------------------------------------------------------------
# never a silent random encoder, within transformers' loading contract


@pytest.fixture
def broken_hub_port(hub_port_dir, tmp_path):
    """A copy of the fixture folder whose weights `edit` changes."""

    def broken(edit):
        folder = tmp_path / "broken"
        folder.mkdir(exist_ok=True)
        shutil.copy(hub_port_dir / "config.json", folder)
        weights = load_file(hub_port_dir / "model.safetensors")
        edit(weights)
        save_file(weights, folder / "model.safetensors")
        return folder

    return broken


def test_missing_encoder_weights_load_as_transformers_says_with_a_loud_warning(broken_hub_port):
    folder = broken_hub_port(lambda weights: weights.pop("model.blocks.1.norm1.weight"))
    with LogRecorder() as log:
        model, info = EATForAudioClassification.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == {"eat.layers.1.attention_norm.weight"} and info["unexpected_keys"] == set()
    (warning,) = [message for message in log.messages if "RANDOMLY INITIALISED" in message]
    assert "1 of the 41 encoder weights are not in the checkpoint (40 matched)" in warning
    assert "missing: eat.layers.1.attention_norm.weight" in warning and "python -m modeling_eat.convert" in warning
    # One warning names them; transformers' table does not list them again.
    assert not any("LOAD REPORT" in message for message in log.messages), log.messages
    assert torch.isfinite(model.eat.layers[1].attention_norm.weight).all()


def test_misshaped_encoder_weights_follow_transformers_ignore_mismatched_sizes(broken_hub_port):
    folder = broken_hub_port(lambda weights: weights.update({"model.blocks.0.mlp.fc1.bias": torch.zeros(5)}))
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        EATForAudioClassification.from_pretrained(folder)
    model, info = EATForAudioClassification.from_pretrained(
        folder, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert [key for key, *_ in info["mismatched_keys"]] == ["eat.layers.0.mlp.fc1.bias"]
    assert model.eat.layers[0].mlp.fc1.bias.shape == (256,)


def test_a_checkpoint_of_other_names_loads_with_a_warning_naming_what_it_holds(broken_hub_port):
    folder = broken_hub_port(lambda weights: weights.update(
        {key.replace("model.", "backbone.", 1): weights.pop(key) for key in list(weights)}
    ))
    with LogRecorder() as log:
        _, info = EATModel.from_pretrained(folder, output_loading_info=True)
    (warning,) = [message for message in log.messages if "RANDOMLY INITIALISED" in message]
    assert "41 of the 41 encoder weights are not in the checkpoint (0 matched)" in warning
    assert "holds another model's weights (top-level names: backbone)" in warning
    assert "missing: " in warning and "layers.{0, 1, 2}.mlp.fc1.weight" in warning
    assert "in the checkpoint instead: " in warning and "backbone.blocks.{0, 1, 2}.mlp.fc1.weight" in warning
    assert "layers.0.mlp.fc1.weight" in info["missing_keys"]
    assert "backbone.blocks.0.mlp.fc1.weight" in info["unexpected_keys"]


def test_a_fairseq_file_saved_as_a_folder_is_named_with_the_converter_as_the_fix(fixtures_dir, tmp_path):
    checkpoint = torch.load(fixtures_dir / "eat_reference" / "fairseq_pretrain_tiny.pt", weights_only=False)
    weights = {key: value for key, value in checkpoint["model"].items() if isinstance(value, torch.Tensor)}
    build(EATModel).config.save_pretrained(tmp_path)
    save_file({key: value.contiguous() for key, value in weights.items()}, tmp_path / "model.safetensors")
    with LogRecorder() as log:
        EATModel.from_pretrained(tmp_path)
    (warning,) = [message for message in log.messages if "RANDOMLY INITIALISED" in message]
    assert "The checkpoint is a fairseq pre-training checkpoint." in warning
    assert "convert official fairseq .pt files with `python -m modeling_eat.convert`" in warning


def test_an_empty_state_dict_initialises_every_class(tmp_path):
    # transformers' contract, which PEFT and partial loads rely on (its test_can_init_all_missing_weights).
    for model_class in (EATModel, EATForAudioClassification, EATForPreTraining):
        config = build(model_class).config
        with LogRecorder() as log:
            model, info = model_class.from_pretrained(None, config=config, state_dict={}, output_loading_info=True)
        assert info["missing_keys"] == set(model.state_dict())
        assert any("holds no weights at all" in message for message in log.messages), log.messages
        floating = [tensor for tensor in model.state_dict().values() if tensor.is_floating_point()]
        assert all(torch.isfinite(tensor).all() for tensor in floating)


def test_a_config_that_does_not_match_the_weights_is_refused(hub_port_dir, tmp_path):
    folder = tmp_path / "wider"
    shutil.copytree(hub_port_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "embed_dim": 128}))
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        EATModel.from_pretrained(folder)


def test_new_head_of_a_classifier_from_an_encoder_folder_is_one_warning(tmp_path):
    build(EATModel).save_pretrained(tmp_path)
    with LogRecorder() as log:
        _, info = EATForAudioClassification.from_pretrained(tmp_path, num_labels=3, output_loading_info=True)
    assert info["missing_keys"] == HEAD_KEYS  # the loading info still lists them, as transformers does
    assert not any("LOAD REPORT" in message for message in log.messages), log.messages
    (warning,) = [message for message in log.messages if "classifier" in message]
    assert "newly initialized, not in the checkpoint: the classification head" in warning
    assert "Train it first." in warning
