"""`pipeline("audio-classification")` on saved EAT folders: input forms, labels, and softmax/sigmoid scores."""

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file
from transformers import pipeline

from modeling_eat import EATFeatureExtractor, EATForAudioClassification

from eat_testing import CLASSIFIER_FRAMES, SAMPLING_RATE, SOUND_LABELS, save_tiny_classifier


def save_classifier(folder, **config_overrides):
    return save_tiny_classifier(folder, CLASSIFIER_FRAMES, SOUND_LABELS, **config_overrides)


@pytest.fixture(scope="module")
def waveform() -> np.ndarray:
    time = np.arange(SAMPLING_RATE // 2) / SAMPLING_RATE
    noise = np.random.default_rng(0).normal(0, 0.05, time.shape)
    return (0.3 * np.sin(2 * np.pi * 440 * time) + noise).astype(np.float32)


def expected_logits(model, waveform) -> torch.Tensor:
    feature_extractor = EATFeatureExtractor(max_length=CLASSIFIER_FRAMES)
    inputs = feature_extractor(waveform, sampling_rate=SAMPLING_RATE, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits[0]


def as_scores(predictions) -> dict[str, float]:
    return {prediction["label"]: prediction["score"] for prediction in predictions}


@pytest.fixture(scope="module")
def single_label(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single_label")
    model = save_classifier(folder)
    return folder, model, pipeline("audio-classification", model=str(folder))


def test_pipeline_on_a_numpy_array(single_label, waveform):
    folder, model, classifier = single_label
    assert isinstance(classifier.model, EATForAudioClassification)
    assert isinstance(classifier.feature_extractor, EATFeatureExtractor)
    predictions = classifier(waveform, top_k=None)
    scores = as_scores(predictions)
    assert set(scores) == set(SOUND_LABELS.values())
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert [p["score"] for p in predictions] == sorted(scores.values(), reverse=True)
    probabilities = expected_logits(model, waveform).softmax(-1)
    for index, label in SOUND_LABELS.items():
        assert scores[label] == pytest.approx(probabilities[index].item(), abs=1e-5)
    assert max(probabilities) - min(probabilities) > 0.05  # the check above tells labels apart


def test_pipeline_on_a_datasets_style_dict(single_label, waveform):
    _, _, classifier = single_label
    from_dict = as_scores(classifier({"array": waveform, "sampling_rate": SAMPLING_RATE}, top_k=None))
    from_array = as_scores(classifier(waveform, top_k=None))
    assert from_dict == pytest.approx(from_array, abs=1e-6)


def test_pipeline_top_k_keeps_the_best_labels(single_label, waveform):
    _, _, classifier = single_label
    all_predictions = classifier(waveform, top_k=None)
    assert classifier(waveform, top_k=2) == all_predictions[:2]


def test_pipeline_on_a_wav_file(single_label, waveform, tmp_path):
    _, model, classifier = single_label
    path = tmp_path / "clip.wav"
    soundfile.write(path, waveform, SAMPLING_RATE, subtype="FLOAT")
    scores = as_scores(classifier(str(path), top_k=None))
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    probabilities = expected_logits(model, soundfile.read(path, dtype="float32")[0]).softmax(-1)
    for index, label in SOUND_LABELS.items():
        assert scores[label] == pytest.approx(probabilities[index].item(), abs=1e-4)


def test_multi_label_checkpoint_gets_sigmoid_scores(tmp_path, waveform):
    model = save_classifier(tmp_path, problem_type="multi_label_classification")
    classifier = pipeline("audio-classification", model=str(tmp_path))
    scores = as_scores(classifier(waveform, top_k=None))
    probabilities = torch.sigmoid(expected_logits(model, waveform))
    for index, label in SOUND_LABELS.items():
        assert scores[label] == pytest.approx(probabilities[index].item(), abs=1e-5)
    assert sum(scores.values()) != pytest.approx(1.0, abs=1e-2)


def test_pipeline_on_a_hub_port_folder_loaded_natively(fixtures_dir, waveform):
    # The hub port's repositories hold no preprocessor config: the extractor is passed in.
    folder = fixtures_dir / "eat_reference" / "hub_port_finetune_tiny"
    feature_extractor = EATFeatureExtractor(max_length=256)
    classifier = pipeline("audio-classification", model=str(folder), feature_extractor=feature_extractor)
    assert isinstance(classifier.model, EATForAudioClassification)
    # The pipeline's model is the port's: it reproduces the reference logits on the reference input ...
    reference = load_file(fixtures_dir / "eat_reference" / "reference_outputs.safetensors")
    with torch.no_grad():
        logits = classifier.model(reference["input"]).logits
    assert (logits - reference["student_logits"]).abs().max().item() < 1e-4
    # ... and the pipeline's scores for a waveform are that model's on the extractor's features.
    scores = as_scores(classifier(waveform, top_k=None))
    inputs = feature_extractor(waveform, sampling_rate=SAMPLING_RATE, return_tensors="pt")
    with torch.no_grad():
        probabilities = classifier.model(**inputs).logits[0].softmax(-1)
    assert len(scores) == 10
    for index, label in classifier.model.config.id2label.items():
        assert scores[label] == pytest.approx(probabilities[index].item(), abs=1e-5)
    assert max(probabilities) - min(probabilities) > 1e-3  # the check above tells labels apart
