"""`from_pretrained` as transformers users expect it: folders in the layout of the hub's remote-code port (the
official `worstchan/EAT-*` repositories, ../shared/fixtures/eat_reference/hub_port_finetune_tiny) load without the
converter, a checkpoint without the encoder's weights is refused instead of leaving a random encoder, and the parts
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

from eat_testing import build, max_error


TOLERANCE = 1e-4  # the fixtures' (../shared/fixtures/README.md)
HEAD_KEYS = {"fc_norm.weight", "fc_norm.bias", "classifier.weight", "classifier.bias"}


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
        assert max_error(model(reference["input"]).logits, reference["student_logits"]) < TOLERANCE
        hidden = model.eat(reference["input"]).last_hidden_state
        assert max_error(hidden, reference["student_last_hidden_state"]) < TOLERANCE
        short = model.eat(reference["input_short"]).last_hidden_state
        assert max_error(short, reference["student_last_hidden_state_short"]) < TOLERANCE


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
    assert max_error(hidden, reference["student_last_hidden_state"]) < TOLERANCE


def test_pretraining_model_from_the_hub_port_copies_the_student_into_the_teacher(hub_port_dir, reference):
    model = AutoModelForPreTraining.from_pretrained(hub_port_dir, clone_batch=2)
    assert type(model) is EATForPreTraining
    with torch.no_grad():
        assert max_error(model.eat(reference["input"]).last_hidden_state, reference["student_last_hidden_state"]) \
            < TOLERANCE
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
    assert max_error(hidden, reference["student_last_hidden_state"]) < TOLERANCE
    # Saved, the folder names this package's code (which it carries), not the port's, which reads another layout.
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["auto_map"] == AUTO_MAP
    assert (tmp_path / "saved" / "modeling_eat.py").read_text() != (folder / "modeling_eat.py").read_text()


# ---------------------------------------------------------------------------------------------------------------------
# never a silent random encoder


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


def test_missing_and_misshaped_encoder_weights_are_refused_listing_them(broken_hub_port):
    def edit(weights):
        del weights["model.blocks.1.norm1.weight"]
        weights["model.blocks.0.mlp.fc1.bias"] = torch.zeros(5)

    folder = broken_hub_port(edit)
    with LogRecorder() as log, pytest.raises(ValueError, match="would leave encoder weights randomly") as error:
        EATForAudioClassification.from_pretrained(folder)
    message = str(error.value)
    assert "missing from the checkpoint: eat.layers.1.attention_norm.weight" in message
    assert "eat.layers.0.mlp.fc1.bias: shape (5,) in the checkpoint, (256,) here" in message
    # The error lists everything once; transformers' table and its own RuntimeError do not come on top.
    assert not any("LOAD REPORT" in message for message in log.messages), log.messages
    with pytest.raises(ValueError, match=r"eat\.layers\.0\.mlp\.fc1\.bias: shape \(5,\)"):
        EATForAudioClassification.from_pretrained(folder, ignore_mismatched_sizes=True)


def test_a_checkpoint_of_other_names_is_refused_naming_what_it_holds(broken_hub_port):
    folder = broken_hub_port(lambda weights: weights.update(
        {key.replace("model.", "backbone.", 1): weights.pop(key) for key in list(weights)}
    ))
    with pytest.raises(ValueError) as error:
        EATModel.from_pretrained(folder)
    message = str(error.value)
    assert "missing from the checkpoint: " in message and "layers.{0, 1, 2}.mlp.fc1.weight" in message
    assert "the checkpoint holds instead: " in message and "backbone.blocks.{0, 1, 2}.mlp.fc1.weight" in message


def test_a_config_that_does_not_match_the_weights_is_refused(hub_port_dir, tmp_path):
    folder = tmp_path / "wider"
    shutil.copytree(hub_port_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "embed_dim": 128}))
    pattern = r"layers\.\{0, 1, 2\}\.mlp\.fc1\.weight: shape \(256, 64\) in the checkpoint, \(512, 128\) here"
    with pytest.raises(ValueError, match=pattern):
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
