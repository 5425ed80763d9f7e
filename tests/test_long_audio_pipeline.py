"""The EAT pipeline on long audio: windows, strides, aggregation, timeline, crop warning, resampling, file streaming,
registration for the task and `trust_remote_code` without the package."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from modeling_eat import EATAudioClassificationPipeline, EATFeatureExtractor, register_eat_pipeline
from modeling_eat.audio_io_eat import resample
from modeling_eat.feature_extraction_eat import kaldi_num_frames, kaldi_num_samples
from modeling_eat.pipeline_eat import moving_average_over_time

from eat_testing import CLASSIFIER_FRAMES, SAMPLING_RATE, SOUND_LABELS, save_tiny_classifier, write_wav


def save_classifier(folder, **config_overrides):
    return save_tiny_classifier(folder, CLASSIFIER_FRAMES, SOUND_LABELS, **config_overrides)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long_audio")
    model = save_classifier(folder)
    return folder, model, pipeline("audio-classification", model=str(folder))


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    """5 s whose content changes every second, so that windows differ."""
    rng = np.random.default_rng(0)
    time = np.arange(SAMPLING_RATE) / SAMPLING_RATE
    pieces = [0.3 * np.sin(2 * np.pi * f * time) + rng.normal(0, s, time.shape) for f, s in
              [(300, 0.01), (2000, 0.2), (700, 0.05), (5000, 0.3), (150, 0.0)]]
    return np.concatenate(pieces).astype(np.float32)


def window_scores(model, audio, window_frames, hop_frames, function="softmax"):
    """Each window classified on its own, from the clip's samples: what the pipeline must reproduce."""
    extractor = EATFeatureExtractor(max_length=CLASSIFIER_FRAMES)
    scores, start = [], 0
    while True:
        samples = audio[160 * start : 160 * start + kaldi_num_samples(window_frames)]
        inputs = extractor(samples, sampling_rate=SAMPLING_RATE, max_length=window_frames, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0]
        scores.append(logits.softmax(-1) if function == "softmax" else logits.sigmoid())
        if start + window_frames >= kaldi_num_frames(len(audio)):  # this window reaches the last frame
            return torch.stack(scores)
        start += hop_frames


def scores_of(labels) -> np.ndarray:
    by_label = {item["label"]: item["score"] for item in labels}
    return np.array([by_label[label] for label in SOUND_LABELS.values()])


def test_the_package_registers_its_pipeline_for_eat_models(classifier):
    _, _, pipe = classifier
    assert type(pipe) is EATAudioClassificationPipeline


def test_other_models_keep_transformers_pipeline():
    # `register_eat_pipeline` (run by `import modeling_eat`) takes the task for EAT only.
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification
    from transformers.pipelines.audio_classification import AudioClassificationPipeline

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                            conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_labels=2)
    model, feature_extractor = Wav2Vec2ForSequenceClassification(config).eval(), Wav2Vec2FeatureExtractor()
    pipe = pipeline("audio-classification", model=model, feature_extractor=feature_extractor)
    assert type(pipe) is AudioClassificationPipeline
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
    direct = AudioClassificationPipeline(model=model, feature_extractor=feature_extractor)
    assert pipe(audio) == direct(audio)


def test_registering_keeps_the_tasks_default_model_and_logs_nothing(monkeypatch):
    tasks = PIPELINE_REGISTRY.supported_tasks
    default = {"model": {"pt": ("someone/audio-classifier", "0123abc")}}
    monkeypatch.setitem(tasks, "audio-classification", {**tasks["audio-classification"], "default": default})
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    # transformers' "Overwriting pipeline for task ..." comes from this logger, which does not propagate.
    pipelines_logger = logging.getLogger("transformers.pipelines.base")
    pipelines_logger.addHandler(handler)
    try:
        register_eat_pipeline()
    finally:
        pipelines_logger.removeHandler(handler)
    assert tasks["audio-classification"]["default"] == default
    assert tasks["audio-classification"]["impl"] is EATAudioClassificationPipeline
    assert messages == []


def test_windows_overlap_and_the_timeline_tiles_the_audio(classifier, audio):
    _, model, pipe = classifier
    # 0.64 s windows sharing 0.1 s on each side: a hop of 44 frames.
    result = pipe(audio, chunk_length_s=0.64, stride_length_s=0.1, return_timeline=True, top_k=None)
    expected = window_scores(model, audio, CLASSIFIER_FRAMES, 44)
    timeline = result["timeline"]
    assert len(timeline) == len(expected) == 11
    for segment, scores in zip(timeline, expected, strict=True):
        np.testing.assert_allclose(scores_of(segment["labels"]), scores.numpy(), atol=1e-5)
    assert timeline[0]["start"] == 0.0 and timeline[-1]["end"] == pytest.approx(len(audio) / SAMPLING_RATE)
    assert all(a["end"] == pytest.approx(b["start"]) for a, b in zip(timeline, timeline[1:]))
    assert timeline[1]["start"] == pytest.approx(0.44 + 0.10)  # the second window starts at 0.44 s, owns after 0.1 s
    durations = torch.tensor([segment["end"] - segment["start"] for segment in timeline])
    mean = (expected * durations[:, None]).sum(0) / durations.sum()
    np.testing.assert_allclose(scores_of(result["labels"]), mean.numpy(), atol=1e-5)
    # The windows tell the parts apart (else the checks above could not fail on a wrong window).
    assert (expected.max(dim=0).values - expected.min(dim=0).values).max() > 0.05


def test_max_aggregation_and_top_k(classifier, audio):
    _, model, pipe = classifier
    result = pipe(audio, chunk_length_s=0.64, stride_length_s=0.1, aggregation="max", top_k=None)
    expected = window_scores(model, audio, CLASSIFIER_FRAMES, 44).max(dim=0).values
    np.testing.assert_allclose(scores_of(result), expected.numpy(), atol=1e-5)
    assert pipe(audio, chunk_length_s=0.64, top_k=2) == pipe(audio, chunk_length_s=0.64, top_k=None)[:2]


def test_moving_average_outvotes_a_lone_window_and_keeps_the_edges_of_long_events():
    # Windows every second; "rain" everywhere but a lone "bark" at 3 s, then "siren" from 6 s on.
    spans = [(second, second + 1.0) for second in range(10)]
    labels = [1, 1, 1, 0, 1, 1, 2, 2, 2, 2]
    scores = torch.nn.functional.one_hot(torch.tensor(labels), 4).float() * 0.9 + 0.025
    smoothed = moving_average_over_time(scores, spans, width_s=2.0)  # the window and one neighbour on each side
    assert smoothed.argmax(-1).tolist() == [1, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    np.testing.assert_allclose(smoothed[3], scores[2:5].mean(0))
    np.testing.assert_allclose(smoothed[0], scores[0:2].mean(0))  # at the edge, the neighbours there are
    np.testing.assert_allclose(smoothed.sum(-1), scores.sum(-1), atol=1e-6)
    # Narrower than the hop: every window alone.
    torch.testing.assert_close(moving_average_over_time(scores, spans, width_s=0.5), scores)


def test_timeline_smoothing_leaves_the_clip_scores_and_smooths_the_windows(classifier, audio):
    _, model, pipe = classifier
    plain = pipe(audio, chunk_length_s=0.64, stride_length_s=0.1, return_timeline=True, top_k=None)
    smooth = pipe(audio, chunk_length_s=0.64, stride_length_s=0.1, return_timeline=True, top_k=None,
                  timeline_smoothing_s=1.0)
    assert smooth["labels"] == plain["labels"]
    expected = window_scores(model, audio, CLASSIFIER_FRAMES, 44)
    spans = [(segment["start"], segment["end"]) for segment in plain["timeline"]]
    smoothed = moving_average_over_time(expected, spans, 1.0)
    for segment, scores in zip(smooth["timeline"], smoothed, strict=True):
        np.testing.assert_allclose(scores_of(segment["labels"]), scores.numpy(), atol=1e-5)
    assert not np.allclose(scores_of(smooth["timeline"][2]["labels"]), scores_of(plain["timeline"][2]["labels"]))


def test_batching_changes_nothing(classifier, audio):
    _, _, pipe = classifier
    one = pipe(audio, chunk_length_s=0.64, batch_size=1, return_timeline=True, top_k=None)
    many = pipe(audio, chunk_length_s=0.64, batch_size=5, return_timeline=True, top_k=None)
    for a, b in zip(one["timeline"], many["timeline"], strict=True):
        np.testing.assert_allclose(scores_of(a["labels"]), scores_of(b["labels"]), atol=1e-5)


def test_long_audio_without_chunk_length_warns_and_names_the_options(classifier, audio, caplog):
    _, model, pipe = classifier
    with caplog.at_level(logging.WARNING):
        cropped = pipe(audio, top_k=None)
    assert "only its first 0.64 s are classified" in caplog.text
    for option in ("chunk_length_s", "stride_length_s", "aggregation", "return_timeline"):
        assert option in caplog.text
    first_window = window_scores(model, audio[:11000], CLASSIFIER_FRAMES, CLASSIFIER_FRAMES)[0]
    np.testing.assert_allclose(scores_of(cropped), first_window, atol=1e-5)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        pipe(audio[: kaldi_num_samples(CLASSIFIER_FRAMES)])  # exactly one window: nothing is left out, nothing to say
    assert "classified" not in caplog.text


def test_a_file_is_probed_for_its_length_only_when_a_progress_bar_may_show(classifier, audio, tmp_path, monkeypatch):
    import modeling_eat.pipeline_eat as pipeline_module

    _, _, pipe = classifier
    path = tmp_path / "clip.wav"
    write_wav(path, audio, SAMPLING_RATE)
    probed = []
    real_probe = pipeline_module.ffprobe_num_samples
    monkeypatch.setattr(pipeline_module, "ffprobe_num_samples", lambda *a: probed.append(a) or real_probe(*a))
    pipe(str(path))
    pipe(str(path), chunk_length_s=0.64, progress_bar=False)
    assert probed == []
    pipe(str(path), chunk_length_s=0.64)
    assert len(probed) == 1


def test_a_wav_file_is_streamed_to_the_same_scores(classifier, audio, tmp_path):
    _, _, pipe = classifier
    path = tmp_path / "long.wav"
    write_wav(path, audio, SAMPLING_RATE)
    from_file = pipe(str(path), chunk_length_s=0.64, return_timeline=True, top_k=None)
    from_bytes = pipe(path.read_bytes(), chunk_length_s=0.64, return_timeline=True, top_k=None)
    from_array = pipe(audio, chunk_length_s=0.64, return_timeline=True, top_k=None)
    for other in (from_file, from_bytes):
        assert [s["start"] for s in other["timeline"]] == [s["start"] for s in from_array["timeline"]]
        np.testing.assert_allclose(scores_of(other["labels"]), scores_of(from_array["labels"]), atol=1e-5)


@pytest.mark.parametrize("input_rate", [8000, 44100])
def test_arrays_at_other_rates_are_resampled_without_torchaudio(classifier, audio, input_rate):
    _, _, pipe = classifier
    other_rate = resample(torch.from_numpy(audio), SAMPLING_RATE, input_rate).numpy()
    result = pipe({"array": other_rate, "sampling_rate": input_rate}, chunk_length_s=0.64, top_k=None)
    expected = pipe(resample(torch.from_numpy(other_rate), input_rate, SAMPLING_RATE).numpy(), chunk_length_s=0.64,
                    top_k=None)
    np.testing.assert_allclose(scores_of(result), scores_of(expected), atol=1e-6)
    # And it is close to the original audio's scores (resampling twice keeps the content below 4 kHz).
    np.testing.assert_allclose(scores_of(result), scores_of(pipe(audio, chunk_length_s=0.64, top_k=None)), atol=0.1)
    assert "torchaudio" not in sys.modules


def test_multi_label_windows_get_sigmoid_scores(tmp_path, audio):
    model = save_classifier(tmp_path, problem_type="multi_label_classification")
    pipe = pipeline("audio-classification", model=str(tmp_path))
    result = pipe(audio, chunk_length_s=0.64, stride_length_s=0.1, return_timeline=True, top_k=None)
    expected = window_scores(model, audio, CLASSIFIER_FRAMES, 44, function="sigmoid")
    for segment, scores in zip(result["timeline"], expected, strict=True):
        np.testing.assert_allclose(scores_of(segment["labels"]), scores.numpy(), atol=1e-5)


def test_progress_bar_on_request(classifier, audio, capsys):
    _, _, pipe = classifier
    pipe(audio, chunk_length_s=0.64, progress_bar=True)
    assert "classifying" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"chunk_length_s": 200.0}, "positional table"),
        ({"chunk_length_s": 0.1}, "one patch row"),
        ({"chunk_length_s": 0.64, "stride_length_s": 0.32}, "leave no new audio"),
        ({"stride_length_s": 0.1}, "needs chunk_length_s"),
        ({"chunk_length_s": 0.64, "aggregation": "median"}, "aggregation must be one of"),
        ({"chunk_length_s": 0.64, "timeline_smoothing_s": 2.0}, "pass return_timeline=True"),
        ({"chunk_length_s": 0.64, "return_timeline": True, "timeline_smoothing_s": -1.0}, "seconds >= 0"),
    ],
)
def test_bad_arguments_are_refused(classifier, audio, arguments, message):
    _, _, pipe = classifier
    with pytest.raises(ValueError, match=message):
        pipe(audio, **arguments)


def test_multi_channel_audio_is_refused(classifier, audio):
    _, _, pipe = classifier
    with pytest.raises(ValueError, match="down-mix"):
        pipe(np.stack([audio, audio]))


CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["modeling_eat"] = None  # only the saved code files can serve
    import numpy as np
    from transformers import pipeline

    pipe = pipeline("audio-classification", model="classifier", trust_remote_code=True)
    audio = np.load("audio.npy")
    result = pipe(audio, chunk_length_s=0.64, stride_length_s=0.1, return_timeline=True, top_k=None)
    inferred = pipeline(model="classifier", trust_remote_code=True)  # the task comes from custom_pipelines
    json.dump({"class": type(pipe).__module__ + "." + type(pipe).__name__, "inferred": type(inferred).__name__,
               "result": result}, open("child.json", "w"))
    """
)


def test_saved_folder_runs_the_pipeline_with_remote_code_only(classifier, audio, tmp_path):
    folder, _, pipe = classifier
    root = tmp_path / "remote"
    root.mkdir()
    subprocess.run(["cp", "-r", str(folder), str(root / "classifier")], check=True)
    assert json.loads((root / "classifier" / "config.json").read_text())["custom_pipelines"]["audio-classification"][
        "impl"] == "pipeline_eat.EATAudioClassificationPipeline"
    np.save(root / "audio.npy", audio)
    (root / "child.py").write_text(CHILD)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    completed = subprocess.run([sys.executable, "child.py"], cwd=root, env=env, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    child = json.loads((root / "child.json").read_text())
    assert child["class"].startswith("transformers_modules.") and child["class"].endswith(
        "pipeline_eat.EATAudioClassificationPipeline")
    assert child["inferred"] == "EATAudioClassificationPipeline"
    here = pipe(audio, chunk_length_s=0.64, stride_length_s=0.1, return_timeline=True, top_k=None)
    assert [s["start"] for s in child["result"]["timeline"]] == [s["start"] for s in here["timeline"]]
    np.testing.assert_allclose(scores_of(child["result"]["labels"]), scores_of(here["labels"]), atol=1e-6)


def timeline_scores(result) -> np.ndarray:
    return np.stack([scores_of(segment["labels"]) for segment in result["timeline"]])


def test_exported_graphs_run_the_pipeline_in_place_of_the_model(classifier, audio, tmp_path):
    from modeling_eat.deployment.export import export
    from modeling_eat.deployment.graph_model import ExportedEATClassifier
    from modeling_eat.deployment.quantization import quantize_graph

    folder, _, pipe = classifier
    export(folder, tmp_path / "graph", "onnx", check_seconds=())
    quantize_graph(tmp_path / "graph" / "model.onnx", tmp_path / "graph" / "model_int8.onnx")
    options = {"chunk_length_s": 0.64, "stride_length_s": 0.1, "return_timeline": True, "top_k": None,
               "timeline_smoothing_s": 1.0, "batch_size": 4}
    expected = pipe(audio, **options)
    # Measured (2026-12-07): int8 moved the scores by up to 1.9e-3; fp32 by 6e-7.
    for graph, tolerance in (("model.onnx", 1e-5), ("model_int8.onnx", 1e-2)):
        model = ExportedEATClassifier.from_pretrained(tmp_path / "graph", graph=graph, num_threads=1)
        result = pipeline("audio-classification", model=model, feature_extractor=model.feature_extractor)(
            audio, **options
        )
        # The same windows, spans and aggregation: only the forward pass ran elsewhere.
        assert [(s["start"], s["end"]) for s in result["timeline"]] == [
            (s["start"], s["end"]) for s in expected["timeline"]
        ]
        np.testing.assert_allclose(timeline_scores(result), timeline_scores(expected), atol=tolerance)
        np.testing.assert_allclose(scores_of(result["labels"]), scores_of(expected["labels"]), atol=tolerance)
        assert result["labels"][0]["label"] == expected["labels"][0]["label"]
    # int8 moved the scores, and the checks above would see a wrong window (the windows differ by more).
    assert np.abs(timeline_scores(result) - timeline_scores(expected)).max() > 1e-5
    assert np.ptp(timeline_scores(expected), axis=0).max() > 10 * tolerance  # 0.24


def test_a_waveform_graph_is_refused_by_the_pipeline_stand_in(classifier, tmp_path):
    from modeling_eat.deployment.export import export
    from modeling_eat.deployment.graph_model import ExportedEATClassifier

    export(classifier[0], tmp_path, "onnx", with_feature_extractor=True, check_seconds=())
    with pytest.raises(ValueError, match="without --with_feature_extractor"):
        ExportedEATClassifier.from_pretrained(tmp_path)
