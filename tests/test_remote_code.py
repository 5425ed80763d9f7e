"""Auto-class registration and `trust_remote_code` loading of saved EAT folders.

The remote-code check runs in a child Python in which the `modeling_eat` package cannot be imported, so everything
it loads comes from the code files saved next to the weights.
"""

import ast
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForPreTraining,
)

import modeling_eat
from modeling_eat import (
    EATConfig,
    EATFeatureExtractor,
    EATForAudioClassification,
    EATForPreTraining,
    EATModel,
)
from modeling_eat.configuration_eat import AUTO_MAP
from modeling_eat.hub import CODE_FILES

from eat_testing import CLASSIFIER_FRAMES, SOUND_LABELS


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A classification folder (model + feature extractor) and a pre-training folder, with reference outputs."""
    root = tmp_path_factory.mktemp("remote")
    config = EATConfig.from_preset(
        "tiny", max_length=CLASSIFIER_FRAMES, id2label=SOUND_LABELS, label2id={v: k for k, v in SOUND_LABELS.items()},
        clone_batch=2,
    )
    feature_extractor = EATFeatureExtractor(max_length=CLASSIFIER_FRAMES)
    torch.manual_seed(0)
    classifier = EATForAudioClassification(config).eval()
    pretraining = EATForPreTraining(config).eval()
    classifier.save_pretrained(root / "classifier")
    feature_extractor.save_pretrained(root / "classifier")
    pretraining.save_pretrained(root / "pretraining")
    feature_extractor.save_pretrained(root / "pretraining")

    waveform = np.random.default_rng(0).uniform(-0.5, 0.5, size=(2, 8000)).astype(np.float32)
    np.save(root / "waveform.npy", waveform)
    input_values = feature_extractor(list(waveform), sampling_rate=16000, return_tensors="pt").input_values
    bool_masked_pos = pretraining.mask_generator(2, CLASSIFIER_FRAMES // 16, 8, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = {
            "input_values": input_values,
            "logits": classifier(input_values).logits,
            "last_hidden_state": classifier.eat(input_values).last_hidden_state,
            "pretraining_loss": pretraining(
                input_values, bool_masked_pos=bool_masked_pos, generator=torch.Generator().manual_seed(2)
            ).loss,
        }
    save_file({"bool_masked_pos": bool_masked_pos}, root / "masks.safetensors")
    return root, expected


def test_auto_classes_give_the_eat_classes(saved):
    root, expected = saved
    classifier_dir, pretraining_dir = root / "classifier", root / "pretraining"
    assert isinstance(AutoConfig.from_pretrained(classifier_dir), EATConfig)
    assert type(AutoModel.from_pretrained(classifier_dir)) is EATModel
    classifier = AutoModelForAudioClassification.from_pretrained(classifier_dir)
    assert type(classifier) is EATForAudioClassification
    assert type(AutoModelForPreTraining.from_pretrained(pretraining_dir)) is EATForPreTraining
    assert type(AutoFeatureExtractor.from_pretrained(classifier_dir)) is EATFeatureExtractor
    with torch.no_grad():
        assert torch.equal(classifier.eval()(expected["input_values"]).logits, expected["logits"])


def test_saved_folder_carries_the_code_and_the_full_auto_map(saved):
    root, _ = saved
    for folder in ("classifier", "pretraining"):
        files = {path.name for path in (root / folder).iterdir()}
        assert set(CODE_FILES) <= files, f"{folder}: {sorted(files)}"
        config = json.loads((root / folder / "config.json").read_text())
        assert config["auto_map"] == AUTO_MAP
        assert len(config["auto_map"]) == 5
    preprocessor = json.loads((root / "classifier" / "preprocessor_config.json").read_text())
    assert preprocessor["auto_map"]["AutoFeatureExtractor"] == AUTO_MAP["AutoFeatureExtractor"]
    # The shipped files import only the standard library, torch, numpy, transformers (with its huggingface_hub, as
    # transformers' own configs do) and each other, so they load wherever transformers does.
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy", "transformers", "huggingface_hub"}
    for name in CODE_FILES:
        tree = ast.parse((root / "classifier" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            assert all(module.split(".")[0] in allowed for module in modules), f"{name}: imports {modules}"


CHILD_SCRIPT = textwrap.dedent(
    """
    import sys

    # The package is installed (editable) on this machine: hide it, so only the saved code files can serve.
    sys.modules["modeling_eat"] = None
    try:
        import modeling_eat  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("modeling_eat is still importable")

    import json
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import (
        AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification, AutoModelForPreTraining,
    )

    # Neither the package nor trust_remote_code: transformers' own error, whose text a folder cannot add to.
    try:
        AutoModel.from_pretrained("classifier")
    except ValueError as error:
        without_either = str(error)
    else:
        without_either = None

    options = dict(trust_remote_code=True)
    config = AutoConfig.from_pretrained("classifier", **options)
    feature_extractor = AutoFeatureExtractor.from_pretrained("classifier", **options)
    encoder = AutoModel.from_pretrained("classifier", **options).eval()
    classifier = AutoModelForAudioClassification.from_pretrained("classifier", **options).eval()
    pretraining = AutoModelForPreTraining.from_pretrained("pretraining", **options).eval()

    waveform = np.load("waveform.npy")
    input_values = feature_extractor(list(waveform), sampling_rate=16000, return_tensors="pt").input_values
    bool_masked_pos = load_file("masks.safetensors")["bool_masked_pos"]
    with torch.no_grad():
        outputs = {
            "input_values": input_values,
            "logits": classifier(input_values).logits,
            "last_hidden_state": encoder(input_values).last_hidden_state,
            "pretraining_loss": pretraining(
                input_values, bool_masked_pos=bool_masked_pos, generator=torch.Generator().manual_seed(2)
            ).loss,
        }
    save_file({name: value.contiguous() for name, value in outputs.items()}, "child_outputs.safetensors")
    loaded = [config, feature_extractor, encoder, classifier, pretraining]
    report = {
        "classes": [type(item).__name__ for item in loaded],
        "modules": [type(item).__module__ for item in loaded],
        "id2label": {str(k): v for k, v in classifier.config.id2label.items()},
        "without_either": without_either,
        "modeling_eat_imported": any(name == "modeling_eat" or name.startswith("modeling_eat.")
                                     for name, module in sys.modules.items() if module is not None),
    }
    with open("child_report.json", "w") as handle:
        json.dump(report, handle)
    """
)


def test_remote_code_loads_without_the_package(saved, tmp_path):
    root, expected = saved
    (root / "child.py").write_text(CHILD_SCRIPT)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    # No terminal on stdin: transformers would otherwise ask whether to run the folder's code.
    result = subprocess.run(
        [sys.executable, "child.py"], cwd=root, env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    report = json.loads((root / "child_report.json").read_text())
    assert report["classes"] == [
        "EATConfig", "EATFeatureExtractor", "EATModel", "EATForAudioClassification", "EATForPreTraining"
    ]
    assert all(module.startswith("transformers_modules.") for module in report["modules"]), report["modules"]
    assert not report["modeling_eat_imported"]
    # What the README says of a folder loaded with neither: transformers refuses, naming trust_remote_code (it cannot
    # name `import modeling_eat`: the message is transformers' and no field of config.json reaches it).
    assert "contains custom code" in report["without_either"]
    assert "trust_remote_code=True" in report["without_either"]
    assert report["id2label"] == {str(k): v for k, v in SOUND_LABELS.items()}
    assert any((tmp_path / "modules").rglob("modeling_eat.py"))  # the code really came through HF_MODULES_CACHE

    child = load_file(root / "child_outputs.safetensors")
    assert torch.equal(child["input_values"], expected["input_values"])
    for name in ("logits", "last_hidden_state", "pretraining_loss"):
        assert (child[name] - expected[name]).abs().max().item() <= 1e-6, name


def test_registration_happens_on_import():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    assert modeling_eat.EATConfig is CONFIG_MAPPING["eat"]
    assert MODEL_MAPPING[EATConfig] is EATModel
