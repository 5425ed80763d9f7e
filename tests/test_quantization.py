"""`python -m modeling_eat.export --quantize int8`: which nodes become int8, the accuracy check on labelled clips (a
tiny classifier fine-tuned on tones), the refusal of a graph that loses accuracy, and the errors that name the fix."""

import json

import numpy as np
import onnx
import pytest
import soundfile
import torch

from modeling_eat import EATFeatureExtractor, EATForAudioClassification, EATModel
from modeling_eat.deployment.accuracy import ClipSource
from modeling_eat.deployment.cli import export_main as main
from modeling_eat.deployment.export import export, load_graph
from modeling_eat.deployment.quantization import (
    QuantizationRequest,
    encoder_weight_matmuls,
    quantize_export,
    quantize_graph,
)

from eat_testing import TONE_CLASSES, refusal, save_tiny_classifier, train_tiny_tone_classifier, write_tone_audiofolder


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tone_audiofolder(tmp_path_factory.mktemp("tones"), {"train": 8, "test": 10})


@pytest.fixture(scope="module")
def tone_classifier(tmp_path_factory, tones):
    folder = tmp_path_factory.mktemp("tone_classifier")
    train_tiny_tone_classifier(folder, tones)
    return folder


def eager_accuracy(folder, data_dir) -> float:
    model = EATForAudioClassification.from_pretrained(folder).eval()
    extractor = EATFeatureExtractor.from_pretrained(folder)
    paths = sorted((data_dir / "test").glob("*.wav"))
    waveforms = [soundfile.read(path, dtype="float32")[0] for path in paths]
    with torch.no_grad():
        logits = model(extractor(waveforms, sampling_rate=16000, return_tensors="pt")["input_values"]).logits
    labels = [model.config.label2id[path.stem.split("_")[0]] for path in paths]
    return float((logits.argmax(-1).numpy() == np.array(labels)).mean())


def quantize_command(model, output_dir, data_dir, *extra):
    return ["--model_name_or_path", str(model), "--output_dir", str(output_dir), "--quantize", "int8",
            "--eval_dataset", str(data_dir), "--num_threads", "1", *extra]


@pytest.mark.parametrize(
    "method, with_feature_extractor", [("dynamic", False), ("static", True)], ids=["dynamic-spectrogram",
                                                                                    "static-waveform"]
)
def test_int8_export_reports_both_accuracies_and_keeps_the_fbank_in_float(tone_classifier, tones, tmp_path, method,
                                                                          with_feature_extractor):
    extra = ["--with_feature_extractor"] if with_feature_extractor else []
    if method == "static":
        extra += ["--quantization_method", "static", "--calibration_dataset", str(tones), "--calibration_samples", "6"]
    report = main(quantize_command(tone_classifier, tmp_path, tones, *extra))
    quantization = json.loads((tmp_path / "export.json").read_text())["quantization"]
    assert quantization == report["quantization"]
    assert quantization["status"] == "accepted" and quantization["graph"] == "model_int8.onnx"
    assert quantization["method"] == method and quantization["quantized_matmuls"] == 3 * 4  # qkv, out, fc1, fc2
    evaluation = quantization["evaluation"]
    assert evaluation["metric"] == "accuracy" and evaluation["num_clips"] == 3 * 10 and evaluation["split"] == "test"
    if not with_feature_extractor:
        # The fp32 graph scores what eager PyTorch scores on the same clips.
        assert evaluation["float32"] == pytest.approx(eager_accuracy(tone_classifier, tones))
    assert evaluation["float32"] >= 0.9  # the tones were learnt
    assert evaluation["drop_points"] == pytest.approx(100 * (evaluation["float32"] - evaluation["int8"]))
    assert evaluation["drop_points"] <= 1.0 and 0.9 <= evaluation["top1_agreement"] <= 1.0
    # int8 arithmetic moved the logits, but by little against their range.
    assert 0 < evaluation["max_abs_logit_difference"] < 0.2 * evaluation["logit_range"]
    calibration = quantization["calibration"]
    assert (calibration is None) == (method == "dynamic")
    if calibration is not None:
        assert calibration["split"] == "train" and calibration["num_clips"] == 6 and calibration["subset_seed"] == 0
    assert quantization["file_bytes"]["int8"] < quantization["file_bytes"]["float32"]
    assert quantization["file_bytes"]["int8"] == (tmp_path / "model_int8.onnx").stat().st_size

    graph = onnx.load(str(tmp_path / "model_int8.onnx"))
    float_matmuls = {node.input[1] for node in graph.graph.node if node.op_type == "MatMul"}
    if with_feature_extractor:
        assert {"dft_matrix", "mel_matrix"} <= float_matmuls  # the fbank stays float32
    (logits,) = load_graph(tmp_path / "model_int8.onnx", num_threads=1)(
        np.zeros((2, 8000), np.float32) if with_feature_extractor else np.zeros((2, 64, 128), np.float32)
    )
    assert logits.shape == (2, len(TONE_CLASSES))


def break_int8_weights(folder, output):
    """The classifier with an outlier in the first input column of every o_proj, fc1 and fc2 weight, whose input the
    model holds at exactly 0 (a zeroed value unit, layer-norm channel, fc1 unit): fp32 never sees the outliers, but
    they set the int8 scale of every output channel, so int8 rounds all the other weights of those layers to 0."""
    model = EATForAudioClassification.from_pretrained(folder)
    hidden_size = model.config.hidden_size
    with torch.no_grad():
        for layer in model.eat.layers:
            attention, mlp = layer.attention, layer.mlp
            attention.qkv_proj.weight[2 * hidden_size] = 0.0  # value unit 0 (head 0) -> o_proj's input 0
            if attention.qkv_proj.bias is not None:
                attention.qkv_proj.bias[2 * hidden_size] = 0.0
            layer.attention_norm.weight[0] = layer.attention_norm.bias[0] = 0.0  # fc1's input 0
            mlp.fc1.weight[0] = mlp.fc1.bias[0] = 0.0  # GELU(0) = 0: fc2's input 0
            for linear in (attention.o_proj, mlp.fc1, mlp.fc2):
                linear.weight[:, 0] = 1e4
    model.save_pretrained(output)
    EATFeatureExtractor.from_pretrained(folder).save_pretrained(output)
    return output


def test_int8_graph_that_loses_accuracy_is_refused_and_kept_aside(tone_classifier, tones, tmp_path):
    model = break_int8_weights(tone_classifier, tmp_path / "outliers")
    with pytest.raises(SystemExit) as exit_info:
        main(quantize_command(model, tmp_path / "graph", tones))
    assert exit_info.value.code == 1
    assert not (tmp_path / "graph" / "model_int8.onnx").exists()
    assert (tmp_path / "graph" / "model_int8.rejected.onnx").is_file()
    report = json.loads((tmp_path / "graph" / "export.json").read_text())
    assert report["graph"] == "model.onnx"  # the fp32 graph remains the folder's graph
    quantization = report["quantization"]
    assert quantization["status"] == "rejected" and quantization["graph"] == "model_int8.rejected.onnx"
    evaluation = quantization["evaluation"]
    assert evaluation["float32"] >= 0.6 and evaluation["drop_points"] > 10
    assert evaluation["top1_agreement"] < 0.9

    # A larger drop allowed on purpose is accepted, and quantizing again replaces the rejected graph.
    quantize_export(tmp_path / "graph", QuantizationRequest(eval_data=ClipSource(str(tones)), max_accuracy_drop=100,
                                                            num_threads=1))
    assert (tmp_path / "graph" / "model_int8.onnx").is_file()
    assert not (tmp_path / "graph" / "model_int8.rejected.onnx").exists()


def test_only_the_encoder_layers_weight_matmuls_are_quantized(tmp_path):
    save_tiny_classifier(tmp_path / "model", 64, {0: "a", 1: "b"})
    export(tmp_path / "model", tmp_path / "graph", "onnx", with_feature_extractor=True, check_seconds=())
    graph = onnx.load(str(tmp_path / "graph" / "model.onnx"), load_external_data=False)
    initializers = {initializer.name for initializer in graph.graph.initializer}
    weights = {node.name: node.input[1] for node in graph.graph.node
               if node.op_type == "MatMul" and node.input[1] in initializers}
    names = set(encoder_weight_matmuls(graph))
    assert len(names) == 3 * 4 and names <= set(weights)
    # What multiplies by a constant and stays float32: the fbank's DFT and mel matrices.
    assert {weights[name] for name in set(weights) - names} == {"dft_matrix", "mel_matrix"}


def test_quantize_refuses_without_labelled_clips_or_a_classifier(tone_classifier, tones, tmp_path):
    # Settled before the export runs: no graph is written.
    message = refusal(main, ["--model_name_or_path", str(tone_classifier), "--output_dir", str(tmp_path / "a"),
                             "--quantize", "int8"])
    assert "pass --eval_dataset" in message
    assert not (tmp_path / "a" / "model.onnx").exists()
    with pytest.raises(SystemExit):
        main(quantize_command(tone_classifier, tmp_path / "b", tones, "--quantization_method", "static"))
    with pytest.raises(SystemExit):
        main(quantize_command(tone_classifier, tmp_path / "c", tones, "--format", "torch_export"))
    encoder = tmp_path / "encoder"
    save_tiny_classifier(encoder, 64, {0: "a"}, EATModel)
    assert "needs a classifier" in refusal(main, quantize_command(encoder, tmp_path / "d", tones))
    assert not (tmp_path / "d" / "model.onnx").exists()


def test_static_calibration_ranges_come_from_every_clip(tmp_path):
    save_tiny_classifier(tmp_path / "model", 64, {0: "a", 1: "b"})
    export(tmp_path / "model", tmp_path / "graph", "onnx", check_seconds=())
    rng = np.random.default_rng(0)
    quiet = [0.1 * rng.standard_normal((1, 64, 128)).astype(np.float32) for _ in range(7)]
    loud = 10 * rng.standard_normal((1, 64, 128)).astype(np.float32)

    def activation_scales(batches, name):
        quantize_graph(tmp_path / "graph" / "model.onnx", tmp_path / name, "static", batches)
        graph = onnx.load(str(tmp_path / name))
        return {initializer.name: onnx.numpy_helper.to_array(initializer) for initializer in graph.graph.initializer
                if initializer.name.endswith("_scale") and "weight" not in initializer.name}

    # Min/max over all clips does not depend on their order: the loud clip widens the ranges first or last.
    first, last = activation_scales([loud, *quiet], "first.onnx"), activation_scales([*quiet, loud], "last.onnx")
    assert first.keys() == last.keys() and len(first) > 0
    for name in first:
        np.testing.assert_array_equal(first[name], last[name])
    without = activation_scales(quiet, "quiet.onnx")
    assert any(without[name].max() < first[name].max() for name in first)  # the loud clip did count
