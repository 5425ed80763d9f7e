"""`python -m modeling_eat.export`: the exportable fbank against the reference fixtures, ONNX (run by ONNX Runtime)
and torch.export graphs against eager PyTorch on 1 s, 10 s and 60 s, and the waveform graph against the pipeline."""

import json
import shutil

import numpy as np
import pytest
import soundfile
import torch
from transformers import pipeline

from modeling_eat import EATConfig, EATFeatureExtractor, EATForAudioClassification, EATModel
from modeling_eat.deployment.cli import export_main as main
from modeling_eat.deployment.export import TOLERANCE, export, load_graph
from modeling_eat.feature_extraction_eat import exportable_fbank_constants, exportable_kaldi_fbank, kaldi_fbank

from eat_testing import CLASSIFIER_FRAMES, SOUND_LABELS, refusal, save_tiny_ast, save_tiny_classifier, write_wav


# The fixture cases and tolerances of tests/test_feature_extraction.py (log-mel units): 1e-3 where the cell is
# within 16 nats of its frame's loudest bin, 1e-2 below (the float32 noise floor).
CASES = ["noise_sine_10s", "chirp_5s", "noise_1s", "short_0p3s", "dc_offset_2s", "long_13s", "fsdd_3_theo_7",
         "fsdd_8_jackson_12"]
TOLERANCE_LOG_MEL, NOISE_FLOOR_TOLERANCE, RESOLVABLE_RANGE = 1e-3, 1e-2, 16.0


@pytest.fixture(scope="module")
def reference(fixtures_dir):
    with np.load(fixtures_dir / "fbank_reference.npz") as data:
        return {key: data[key] for key in data.files}


# Measured (2026-12-01) worst |exportable - torchaudio| on resolvable cells / all cells: 3.2e-4 / 5.7e-3 (chirp_5s);
# worst |exportable - kaldi_fbank|: 6.6e-3 on chirp_5s's noise floor.
@pytest.mark.parametrize("name", CASES)
def test_exportable_fbank_matches_the_reference_and_kaldi_fbank(reference, name):
    wave, raw = torch.from_numpy(reference[f"{name}/wave"]), reference[f"{name}/raw"]
    fbank = exportable_kaldi_fbank(wave[None], **exportable_fbank_constants())[0].numpy()
    assert fbank.shape == raw.shape
    resolvable = raw >= raw.max(axis=-1, keepdims=True) - RESOLVABLE_RANGE
    for expected in (raw, kaldi_fbank(wave).numpy()):
        error = np.abs(fbank - expected)
        assert error[resolvable].max() <= TOLERANCE_LOG_MEL
        assert error.max() <= NOISE_FLOOR_TOLERANCE


def test_exportable_fbank_batches_equal_clips():
    waves = 0.1 * torch.randn(3, 8000, generator=torch.Generator().manual_seed(0))
    batch = exportable_kaldi_fbank(waves, **exportable_fbank_constants())
    for index, wave in enumerate(waves):
        torch.testing.assert_close(batch[index], exportable_kaldi_fbank(wave[None], **exportable_fbank_constants())[0])


def save_folder(folder, model_class=EATForAudioClassification):
    # The classifier's head is scaled to logits of a trained model's size, so that 1e-4 is a real bound.
    save_tiny_classifier(folder, CLASSIFIER_FRAMES, SOUND_LABELS, model_class)
    return folder


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory):
    return save_folder(tmp_path_factory.mktemp("classifier"))


@pytest.mark.parametrize("graph_format", ["onnx", "torch_export"])
@pytest.mark.parametrize("with_feature_extractor", [False, True], ids=["spectrogram", "waveform"])
def test_exported_graph_equals_eager_on_1_10_60_seconds(classifier_folder, tmp_path, graph_format,
                                                        with_feature_extractor):
    report = export(classifier_folder, tmp_path, graph_format, with_feature_extractor, check_seconds=(1, 10, 60))
    assert set(report["max_abs_difference_vs_eager"]) == {"1s", "10s", "60s"}
    assert max(report["max_abs_difference_vs_eager"].values()) <= TOLERANCE
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["input"]["name"] == ("waveform" if with_feature_extractor else "input_values")
    assert saved["outputs"] == ["logits"] and saved["id2label"] == {str(k): v for k, v in SOUND_LABELS.items()}
    assert (tmp_path / "config.json").is_file() and (tmp_path / "preprocessor_config.json").is_file()
    # Any batch size and length: 3 clips of 2.5 s.
    run = load_graph(tmp_path / report["graph"])
    shape = (3, 40000) if with_feature_extractor else (3, 256, 128)
    (logits,) = run(np.zeros(shape, dtype=np.float32))
    assert logits.shape == (3, len(SOUND_LABELS))


def test_encoder_exports_hidden_states(tmp_path):
    folder = save_folder(tmp_path / "encoder", EATModel)
    report = export(folder, tmp_path / "graph", "onnx", with_feature_extractor=True, check_seconds=(1.0,))
    assert report["outputs"] == ["last_hidden_state", "pooler_output"] and report["id2label"] is None
    last_hidden_state, pooler_output = load_graph(tmp_path / "graph" / "model.onnx")(np.zeros((1, 16000), np.float32))
    # 1 s = 98 frames, padded to 7 rows (more than the extractor's 64 frames): CLS + 7 x 8 patches.
    assert last_hidden_state.shape == (1, 1 + 8 * 7, 64) and pooler_output.shape == (1, 64)


def test_waveform_graph_gives_the_pipeline_scores_of_a_wav(classifier_folder, tmp_path):
    main(["--model_name_or_path", str(classifier_folder), "--output_dir", str(tmp_path), "--with_feature_extractor"])
    run = load_graph(tmp_path / "model.onnx")
    classify = pipeline("audio-classification", model=str(classifier_folder))
    rng = np.random.default_rng(1)
    for seconds in (0.3, 0.64):  # a clip the pipeline pads to the model's window, and one that fills it
        path = tmp_path / f"clip_{seconds}.wav"
        write_wav(path, (0.2 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        scores = {item["label"]: item["score"] for item in classify(str(path), top_k=None)}
        waveform = soundfile.read(path, dtype="float32")[0]
        (logits,) = run(waveform[None])
        probabilities = torch.from_numpy(logits[0]).softmax(-1).numpy()
        np.testing.assert_allclose([scores[label] for label in SOUND_LABELS.values()], probabilities, atol=1e-5)
        assert probabilities.max() - probabilities.min() > 0.05


def test_waveform_graph_applies_the_extractors_loudness_normalisation(tmp_path):
    folder = save_folder(tmp_path / "rms")
    EATFeatureExtractor(max_length=CLASSIFIER_FRAMES, waveform_rms=0.05).save_pretrained(folder)
    report = export(folder, tmp_path / "graph", "onnx", with_feature_extractor=True, check_seconds=(1.0,))
    assert max(report["max_abs_difference_vs_eager"].values()) <= TOLERANCE
    run = load_graph(tmp_path / "graph" / "model.onnx")
    quiet = (0.01 * np.random.default_rng(2).standard_normal((1, 16000))).astype(np.float32)
    np.testing.assert_allclose(run(quiet)[0], run(5 * quiet)[0], atol=1e-4)


def test_command_refuses_to_overwrite_and_folders_without_an_extractor(classifier_folder, tmp_path):
    main(["--model_name_or_path", str(classifier_folder), "--output_dir", str(tmp_path), "--format", "torch_export"])
    assert (tmp_path / "model.pt2").is_file()
    with pytest.raises(SystemExit):
        main(["--model_name_or_path", str(classifier_folder), "--output_dir", str(tmp_path), "--format",
              "torch_export"])
    bare = tmp_path / "bare"
    EATForAudioClassification(EATConfig.from_preset("tiny", num_labels=2)).save_pretrained(bare)
    with pytest.raises(ValueError, match="no preprocessor_config.json"):
        export(bare, tmp_path / "out")


def test_other_models_are_named_and_the_models_own_folder_takes_the_graph(classifier_folder, tmp_path, capfd):
    ast = save_tiny_ast(tmp_path / "ast")
    message = refusal(main, ["--model_name_or_path", str(ast), "--output_dir", str(tmp_path / "out")])
    assert f"--model_name_or_path {ast} holds a model of type 'audio-spectrogram-transformer' (ASTModel)" in message
    assert not (tmp_path / "out").exists()

    # --output_dir the model's folder (once a SameFileError after the graph was written): the graph goes beside the
    # model, whose files stay as they were; the exporter's notes stay off the console.
    folder = tmp_path / "model"
    shutil.copytree(classifier_folder, folder)
    before = {name: (folder / name).read_bytes() for name in ("config.json", "preprocessor_config.json")}
    capfd.readouterr()
    main(["--model_name_or_path", str(folder), "--output_dir", str(folder)])
    assert json.loads((folder / "export.json").read_text())["graph"] == "model.onnx"
    assert (folder / "model.onnx").is_file()
    assert {name: (folder / name).read_bytes() for name in before} == before
    stderr = capfd.readouterr().err
    assert "onnx_ir" not in stderr and "torchvision" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and f" INFO modeling_eat.deployment.cli: wrote {folder / 'model.onnx'} " in lines[0], stderr
