import base64
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from modeling_eat import EATConfig, EATFeatureExtractor, EATForAudioClassification, EATForPreTraining
from modeling_eat.conversion.cli import convert_main
from modeling_eat.hub import (
    CODE_FILES,
    check_config_source,
    check_folder_for_hub,
    check_hub_access,
    check_model_source,
    eval_results_from_folder,
    publish_folder,
    write_model_card,
)
from modeling_eat.runtime import CommandError


LABELS = ["dog", "rain", "siren"]
MODEL_ID = "test-user/eat-tiny-sounds"
BASE_MODEL = "test-user/eat-tiny-pretrained"
EVAL_RESULTS = {"eval_loss": 0.41, "eval_accuracy": 0.875, "eval_map": 0.6123, "eval_runtime": 2.5, "epoch": 3.0}




def _save_folder(folder, model_class, **config_overrides):
    torch.manual_seed(0)
    config = EATConfig.from_preset("tiny", **config_overrides)
    model_class(config).eval().save_pretrained(folder)
    EATFeatureExtractor(max_length=128).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub") / "eat-tiny-sounds"
    _save_folder(
        folder,
        EATForAudioClassification,
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
    )
    (folder / "eval_results.json").write_text(json.dumps(EVAL_RESULTS))
    write_model_card(
        folder,
        base_model=BASE_MODEL,
        datasets=["test-user/sounds"],
        eval_results=eval_results_from_folder(folder),
        model_id=MODEL_ID,
    )
    return folder


def test_save_pretrained_ships_the_code_files(classifier_folder):
    assert all((classifier_folder / name).is_file() for name in CODE_FILES)
    assert check_folder_for_hub(classifier_folder) == []


def test_classifier_card_front_matter(classifier_folder):
    card = ModelCard.load(classifier_folder / "README.md")
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "audio-classification"
    assert data.license == "apache-2.0"
    assert {"audio", "audio-classification", "eat", "custom_code"} <= set(data.tags)
    assert "self-supervised-learning" not in data.tags
    assert data.base_model == BASE_MODEL
    assert data.datasets == ["test-user/sounds"]
    # loss, runtime and epoch are bookkeeping, not metrics
    assert data.metrics == ["accuracy", "map"]
    assert data.model_name == MODEL_ID
    results = {result.metric_type: result for result in data.eval_results}
    assert set(results) == {"accuracy", "map"}
    assert results["accuracy"].metric_value == pytest.approx(0.875)
    assert results["map"].metric_value == pytest.approx(0.6123)
    assert results["map"].metric_name == "mAP"
    assert {(result.task_type, result.dataset_type, result.dataset_split) for result in data.eval_results} == {
        ("audio-classification", "test-user/sounds", "test")
    }

    body = card.text
    assert 'pipeline("audio-classification", model=model_id, trust_remote_code=True)' in body
    assert f'model_id = "{MODEL_ID}"' in body
    assert "| Labels | 3 (single_label_classification) |" in body
    assert "128 frames (1.28 s)" in body
    assert "| mAP | 0.6123 |" in body
    assert "eprint        = {2401.03497}" in body
    assert "ffmpeg" in body
    assert "$" not in body, "an unfilled template placeholder was left in the card"
    assert "function_to_apply" not in body


def test_multi_label_card_names_sigmoid(tmp_path):
    # Before transformers 5.23 the pipeline applies softmax whatever the problem type: the card must say sigmoid.
    folder = _save_folder(tmp_path / "eat-tiny-tags", EATForAudioClassification, num_labels=3,
                          problem_type="multi_label_classification")
    write_model_card(folder, model_id=MODEL_ID)
    body = ModelCard.load(folder / "README.md").text
    assert 'print(classifier("sound.wav", top_k=5, function_to_apply="sigmoid"))' in body


def test_pretraining_folder_card(tmp_path):
    folder = _save_folder(tmp_path / "eat-tiny-pretrain", EATForPreTraining)
    write_model_card(folder, datasets=["test-user/unlabelled-audio"], tags=["data2vec"])
    assert eval_results_from_folder(folder) is None

    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "feature-extraction"
    assert {"audio", "eat", "custom_code", "self-supervised-learning", "data2vec"} <= set(card.data.tags)
    assert "audio-classification" not in card.data.tags
    assert card.data.base_model is None and card.data.eval_results is None
    assert "model_name" not in card.content.split("---")[1]
    assert "AutoModel.from_pretrained(model_id, trust_remote_code=True)" in card.text
    assert "AutoModelForPreTraining" in card.text
    assert "| Pre-training objective | eat |" in card.text
    # the teacher and the decoder are stored but are not part of the encoder
    parameters = re.search(r"\| Parameters \| ([\d.]+) M in the encoder, ([\d.]+) M stored \|", card.text)
    encoder, stored = parameters.groups()
    assert float(stored) > 2 * float(encoder) > 0
    # a pre-training folder publishes with the full auto_map too, so AutoModel can open it
    assert check_folder_for_hub(folder) == []

    # the card's encoder snippet loads the student encoder's trained weights, not a fresh initialisation
    snippet = re.search(r"```python\n(.*?)```", card.text, re.DOTALL).group(1)
    namespace = {}
    torch.manual_seed(1234)
    exec(snippet.replace('"eat-tiny-pretrain"', repr(str(folder))), namespace)
    stored = load_file(folder / "model.safetensors")
    torch.testing.assert_close(
        namespace["model"].layers[0].attention.qkv_proj.weight, stored["eat.layers.0.attention.qkv_proj.weight"]
    )
    assert namespace["clip_embedding"].shape == (1, 64)
    assert namespace["patch_embeddings"].shape == (1, 128 // 16 * 8, 64)


def test_card_snippet_runs_with_remote_code_only(classifier_folder, tmp_path):
    """The card's own usage snippet, run where the modeling_eat package cannot be imported, matches local logits."""
    card_text = (classifier_folder / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card_text, re.DOTALL).group(1)
    snippet = snippet.replace(f'"{MODEL_ID}"', repr(str(classifier_folder)))
    rng = np.random.default_rng(1)
    soundfile.write(tmp_path / "sound.wav", rng.uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)
    child = "\n".join(
        [
            "import sys",
            "sys.modules['modeling_eat'] = None",
            "try:",
            "    import modeling_eat",
            "except ImportError:",
            "    pass",
            "else:",
            "    raise SystemExit('modeling_eat must not be importable here')",
            snippet,
            "import json",
            "modules = [type(model).__module__, type(feature_extractor).__module__]",
            "print('RESULT' + json.dumps({'logits': logits.tolist(), 'modules': modules,"
            " 'predictions': classifier('sound.wav', top_k=5)}))",
        ]
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    completed = subprocess.run(
        [sys.executable, "-c", child], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.split("RESULT", 1)[1])

    assert [module.split(".")[0] for module in result["modules"]] == ["transformers_modules"] * 2
    feature_extractor = EATFeatureExtractor.from_pretrained(classifier_folder)
    model = EATForAudioClassification.from_pretrained(classifier_folder).eval()
    waveform = np.random.default_rng(0).uniform(-0.1, 0.1, 16000).astype(np.float32)
    with torch.no_grad():
        expected = model(**feature_extractor(waveform, sampling_rate=16000, return_tensors="pt")).logits
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, rtol=1e-5, atol=1e-5)
    predictions = result["predictions"]
    assert sorted(prediction["label"] for prediction in predictions) == sorted(LABELS)
    assert sum(prediction["score"] for prediction in predictions) == pytest.approx(1.0, abs=1e-4)


def test_publish_folder_uploads_through_the_hub_api(classifier_folder, tmp_path, fake_hub):
    folder = tmp_path / "to-publish"
    shutil.copytree(classifier_folder, folder)
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"not for the Hub")

    url = publish_folder(folder, MODEL_ID, token="hf_fake_token", private=True)

    assert fake_hub.created == {"name": "eat-tiny-sounds", "organization": "test-user", "visibility": "private"}
    assert fake_hub.requests == [
        "POST /api/repos/create",
        "POST /api/validate-yaml",
        f"POST /api/models/{MODEL_ID}/preupload/main",
        f"POST /api/models/{MODEL_ID}/commit/main",
    ]
    assert fake_hub.authorizations == {"Bearer hf_fake_token"}
    assert url == f"https://huggingface.co/{MODEL_ID}/commit/0123abc"
    expected = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", *CODE_FILES}
    assert expected <= set(fake_hub.uploaded)
    assert not any(path.startswith("checkpoint-") for path in fake_hub.uploaded)
    weights = (folder / "model.safetensors").read_bytes()
    assert base64.b64decode(fake_hub.uploaded["model.safetensors"]) == weights


def test_incomplete_folder_is_refused_before_any_request(classifier_folder, tmp_path, fake_hub):
    folder = tmp_path / "incomplete"
    shutil.copytree(classifier_folder, folder)
    (folder / "masking_eat.py").unlink()
    (folder / "README.md").unlink()
    config = json.loads((folder / "config.json").read_text())
    del config["auto_map"]["AutoModelForPreTraining"]
    (folder / "config.json").write_text(json.dumps(config))

    problems = check_folder_for_hub(folder)
    assert len(problems) == 3
    assert "AutoModelForPreTraining" in problems[0] and "AUTO_MAP" in problems[0]
    assert "masking_eat.py" in problems[1] and "import modeling_eat" in problems[1]
    assert "README.md is missing" in problems[2] and "write_model_card" in problems[2]

    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"not ready to publish(.|\n)*masking_eat\.py(.|\n)*pytorch_model\.bin"):
        publish_folder(folder, MODEL_ID, token="hf_fake_token")
    assert fake_hub.requests == []


def test_missing_config_and_bad_eval_results_explain_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing: save the model"):
        write_model_card(tmp_path)
    assert check_folder_for_hub(tmp_path / "nowhere") == [
        f"{tmp_path / 'nowhere'} is not a directory: pass the folder written by `save_pretrained`."
    ]
    (tmp_path / "eval_results.json").write_text("[0.5]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        eval_results_from_folder(tmp_path)


def test_converter_publishes_with_the_training_scripts_options(fixtures_dir, tmp_path, fake_hub, capsys):
    arguments = ["--checkpoint_path", str(fixtures_dir / "eat_reference" / "fairseq_finetune_tiny.pt"),
                 "--output_dir", str(tmp_path / "eat-tiny-sounds"), "--push_to_hub", "--hub_model_id", MODEL_ID,
                 "--hub_token", "hf_fake_token", "--hub_private_repo"]
    assert convert_main(arguments) == 0, capsys.readouterr().err
    assert fake_hub.created == {"name": "eat-tiny-sounds", "organization": "test-user", "visibility": "private"}
    assert fake_hub.authorizations == {"Bearer hf_fake_token"}
    assert {"config.json", "model.safetensors", "README.md", *CODE_FILES} <= set(fake_hub.uploaded)
    assert f"pushed to https://huggingface.co/{MODEL_ID}/commit/0123abc" in capsys.readouterr().out


def test_publish_folder_defaults_to_the_folders_name_as_its_model_card_does(classifier_folder, tmp_path, fake_hub):
    folder = tmp_path / "eat-unnamed"
    shutil.copytree(classifier_folder, folder)
    url = publish_folder(folder, token="hf_fake_token")
    assert fake_hub.created["name"] == "eat-unnamed"
    assert url.endswith("/eat-unnamed/commit/0123abc")


def test_the_token_is_checked_with_the_hub_before_the_work(fake_hub, no_hub_token):
    assert check_hub_access("hf_fake_token") == "test-user"
    assert fake_hub.requests == ["GET /api/whoami-v2"] and fake_hub.authorizations == {"Bearer hf_fake_token"}
    for token, problem in ((None, "needs a Hub token and none is set: run `hf auth login`"),
                           ("hf_bad_token", "the Hub rejects the token (401 Unauthorized)"),
                           ("hf_read_token", "the token of test-user may only read")):
        with pytest.raises(CommandError) as error:
            check_hub_access(token)
        message = str(error.value)
        assert message.startswith("--push_to_hub") and problem in message and "\n" not in message
        assert message.endswith("upload the folder later with modeling_eat.hub.publish_folder.")


def test_an_offline_machine_is_named_before_the_work(no_hub_token):
    # The suite runs offline (conftest): huggingface_hub refuses the request itself.
    with pytest.raises(CommandError, match="^--push_to_hub: HF_HUB_OFFLINE is set, so the upload at the end would"):
        check_hub_access("hf_fake_token")


def test_a_model_folder_without_readable_weights_is_refused_before_the_run(classifier_folder, tmp_path):
    """A copy that left the weights behind, or a download cut short, was transformers' OSError or safetensors'
    "header too large" traceback once the data had been loaded."""
    assert check_model_source(classifier_folder)["model_type"] == "eat"
    folder = shutil.copytree(classifier_folder, tmp_path / "copy", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(CommandError) as error:
        check_model_source(folder)
    assert str(error.value) == (
        f"--model_name_or_path {folder} holds a config.json but no weights (none of model.safetensors, "
        "model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json): pass the whole folder "
        "`save_pretrained` wrote (a copy may have left them behind)."
    )
    check_config_source(folder)  # a config is all --config_name reads
    (folder / "model.safetensors").write_bytes(b"cut short")
    with pytest.raises(CommandError, match=r"--model_name_or_path .*copy: model.safetensors cannot be read \(.*\): it "
                       "is damaged or incomplete; save or download the model again."):
        check_model_source(folder)
