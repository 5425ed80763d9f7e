"""The inference workflow (modeling_eat/inference/): embedding extraction (`python -m modeling_eat.extract`) and the
linear probe (`python -m modeling_eat.linear_probe`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from modeling_eat import EATConfig, EATFeatureExtractor, EATModel
from modeling_eat.audio import load_audio_dataset
from modeling_eat.inference.cli import (
    extract_main,
    is_probe_results,
    parse_extract_args,
    parse_probe_args,
    probe_main,
)
from modeling_eat.inference.features import extract_features
from modeling_eat.inference.probe import linear_probe, pooled_features, pooled_size
from modeling_eat.inference.sources import decoded_clips, find_audio_files
from modeling_eat.inference.storage import load_features, save_features

from eat_testing import SAMPLING_RATE, save_tiny_ast


# 8 patch rows = 128 frames (1.28 s) at most, so a few seconds of audio already needs windows.
MAX_TIME_PATCHES = 8
# 0.5 s, 1 s and 1.2 s: 48, 98 and 118 fbank frames, i.e. 3, 7 and 8 patch rows (the last row partly padding).
CLIP_SAMPLES = (8000, 16000, 19200)
CLIP_ROWS = (3, 7, 8)




@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = EATConfig.from_preset("tiny", max_time_patches=MAX_TIME_PATCHES, max_length=128)
    return EATModel(config).eval()


@pytest.fixture(scope="module")
def feature_extractor():
    return EATFeatureExtractor.from_preset("audioset")


def waveform(num_samples: int, seed: int) -> np.ndarray:
    """A chirp in noise, so that every patch row differs."""
    rng = np.random.default_rng(seed)
    time = np.arange(num_samples) / SAMPLING_RATE
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 1500 * time) * time)
    return (chirp + 0.05 * rng.standard_normal(num_samples)).astype(np.float32)


@pytest.fixture(scope="module")
def clips():
    return [waveform(num_samples, seed) for seed, num_samples in enumerate(CLIP_SAMPLES)]


def direct_outputs(model, feature_extractor, audio, num_frames, hidden_layer=None):
    """CLS and frequency-pooled patch rows of one clip, from a plain forward pass of the model."""
    features = feature_extractor(
        audio, sampling_rate=SAMPLING_RATE, max_length=num_frames, return_attention_mask=True, return_tensors="pt"
    )
    with torch.no_grad():
        outputs = model(features["input_values"], output_hidden_states=hidden_layer is not None)
    hidden = outputs.last_hidden_state if hidden_layer is None else outputs.hidden_states[hidden_layer]
    rows = hidden[0, 1:].reshape(num_frames // 16, 8, -1).mean(dim=1)
    return outputs.pooler_output[0] if hidden_layer is None else hidden[0, 0], rows


def test_shapes_time_stamps_and_pooler_output(model, feature_extractor, clips):
    # batch_size 2 puts clips of different lengths in one padded batch: padding must not change anything.
    features = extract_features(model, feature_extractor, clips, names=["a", "b", "c"], batch_size=2)
    hidden_size = model.config.hidden_size

    assert [clip.name for clip in features] == ["a", "b", "c"]
    assert np.stack([clip.utterance_embedding for clip in features]).shape == (3, hidden_size)
    for clip, audio, num_rows in zip(features, clips, CLIP_ROWS):
        assert clip.frame_embeddings.shape == (num_rows, hidden_size)
        np.testing.assert_allclose(clip.frame_times, 0.16 * np.arange(num_rows), atol=1e-6)
        pooler_output, rows = direct_outputs(model, feature_extractor, audio, 16 * num_rows)
        np.testing.assert_allclose(clip.utterance_embedding, pooler_output.numpy(), atol=2e-5)
        np.testing.assert_allclose(clip.frame_embeddings, rows.numpy(), atol=2e-5)


def test_hidden_layer(model, feature_extractor, clips):
    (clip,) = extract_features(model, feature_extractor, clips[1:2], layer=1)
    cls, rows = direct_outputs(model, feature_extractor, clips[1], 16 * CLIP_ROWS[1], hidden_layer=1)
    np.testing.assert_allclose(clip.utterance_embedding, cls.numpy(), atol=2e-5)
    np.testing.assert_allclose(clip.frame_embeddings, rows.numpy(), atol=2e-5)
    (last_layer_clip,) = extract_features(model, feature_extractor, clips[1:2])
    assert not np.allclose(clip.utterance_embedding, last_layer_clip.utterance_embedding)
    with pytest.raises(ValueError, match="layer=4 does not exist: the model has 3 blocks"):
        extract_features(model, feature_extractor, clips[:1], layer=4)


def test_long_clip_is_windowed(model, feature_extractor):
    # 3 s = 298 frames = 19 rows = 304 frames, over the 128-frame limit: windows of 0.64 s = 4 rows (4+4+4+4+3).
    audio = waveform(3 * SAMPLING_RATE, seed=7)
    (clip,) = extract_features(model, feature_extractor, [audio], window_seconds=0.64, batch_size=3)
    assert clip.frame_embeddings.shape == (19, model.config.hidden_size)
    np.testing.assert_allclose(clip.frame_times, 0.16 * np.arange(19), atol=1e-5)

    whole = feature_extractor(audio, sampling_rate=SAMPLING_RATE, max_length=304, return_tensors="pt")["input_values"]
    expected_rows, window_cls, window_rows = [], [], []
    for start in range(0, 304, 64):
        window = whole[:, start : start + 64]
        with torch.no_grad():
            outputs = model(window)
        expected_rows.append(outputs.last_hidden_state[0, 1:].reshape(-1, 8, 64).mean(dim=1))
        window_cls.append(outputs.pooler_output[0])
        window_rows.append(window.shape[1] // 16)
    np.testing.assert_allclose(clip.frame_embeddings, torch.cat(expected_rows).numpy(), atol=2e-5)
    weights = torch.tensor(window_rows, dtype=torch.float32)[:, None]
    expected_cls = (torch.stack(window_cls) * weights).sum(0) / weights.sum()
    np.testing.assert_allclose(clip.utterance_embedding, expected_cls.numpy(), atol=2e-5)

    # By default, windows are 10 s or the model's limit: here 128 frames (8 + 8 + 3 rows).
    (clip_in_default_windows,) = extract_features(model, feature_extractor, [audio])
    with torch.no_grad():
        first_rows = model(whole[:, :128]).last_hidden_state[0, 1:].reshape(-1, 8, 64).mean(dim=1)
    np.testing.assert_allclose(clip_in_default_windows.frame_embeddings[:8], first_rows.numpy(), atol=2e-5)
    assert clip_in_default_windows.frame_embeddings.shape[0] == 19
    assert not np.allclose(clip_in_default_windows.frame_embeddings[4:8], clip.frame_embeddings[4:8], atol=1e-3)

    with pytest.raises(ValueError, match=r"window_seconds=2.0 \(192 frames\) is longer than the model takes"):
        extract_features(model, feature_extractor, [audio], window_seconds=2.0)


@pytest.mark.parametrize("format", ["safetensors", "npy", "datasets"])
def test_formats_round_trip(model, feature_extractor, clips, tmp_path, format):
    features = extract_features(model, feature_extractor, clips, names=["x/a.wav", "b.flac", "c.mp3"])
    output = tmp_path / ("features.safetensors" if format == "safetensors" else "features")
    save_features(features, output, format, metadata={"layer": 3, "frame_times": "start"})
    loaded, metadata = load_features(output)

    assert metadata == {"layer": 3, "frame_times": "start"}
    assert [clip.name for clip in loaded] == ["x/a.wav", "b.flac", "c.mp3"]
    for original, restored in zip(features, loaded):
        np.testing.assert_array_equal(restored.utterance_embedding, original.utterance_embedding)
        np.testing.assert_array_equal(restored.frame_embeddings, original.frame_embeddings)
        np.testing.assert_array_equal(restored.frame_times, original.frame_times)


def write_clips(folder: Path, clips) -> list[Path]:
    paths = [folder / "a.wav", folder / "nested" / "b.flac", folder / "nested" / "deeper" / "c.wav"]
    for path, audio in zip(paths, clips):
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, audio, SAMPLING_RATE)
    (folder / "notes.txt").write_text("not audio")
    return paths


def test_folder_search_and_resampled_input(tmp_path, clips):
    paths = write_clips(tmp_path / "clips", clips)
    assert find_audio_files([tmp_path / "clips"]) == sorted(paths)
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        find_audio_files([tmp_path / "missing"])

    # A 1 s clip stored at 8 kHz is resampled to 16 kHz: 98 frames, as for the 16 kHz original.
    soundfile.write(tmp_path / "slow.wav", clips[1][::2], 8000)
    ((name, audio),) = decoded_clips([str(tmp_path / "slow.wav")], SAMPLING_RATE)
    assert name == str(tmp_path / "slow.wav") and audio.shape == (SAMPLING_RATE,)

    # MP3 goes through FFmpeg; the encoder adds up to a frame of delay and padding.
    mp3 = tmp_path / "clips" / "d.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(paths[0]), str(mp3)], check=True, timeout=60)
    assert mp3 in find_audio_files([tmp_path / "clips"])
    ((_, audio),) = decoded_clips([str(mp3)], SAMPLING_RATE)
    assert abs(audio.shape[0] - CLIP_SAMPLES[0]) <= 2 * 1152

    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    with pytest.raises(ValueError, match="broken.wav: soundfile failed .*Fix or remove the file"):
        list(decoded_clips([str(tmp_path / "broken.wav")], SAMPLING_RATE))
    skipped = []
    assert list(decoded_clips([str(tmp_path / "broken.wav")], SAMPLING_RATE, skipped=skipped)) == []
    assert skipped == [str(tmp_path / "broken.wav")]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, model, feature_extractor):
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    feature_extractor.save_pretrained(folder)
    return folder


def test_command_on_folder(tmp_path, saved_model, model, feature_extractor, clips):
    paths = write_clips(tmp_path / "clips", clips)
    output = tmp_path / "features.safetensors"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [
        sys.executable, "-m", "modeling_eat.extract", "--model_name_or_path", str(saved_model),
        "--output", str(output), "--device", "cpu", "--per_device_eval_batch_size", "2", str(tmp_path / "clips"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    loaded, metadata = load_features(output)
    assert [clip.name for clip in loaded] == [str(path) for path in sorted(paths)]
    assert metadata["frame_hop_seconds"] == pytest.approx(0.16) and metadata["frame_times"] == "start"
    # The files hold 16-bit PCM: compare with the library on the decoded files, not on the float originals.
    names, decoded = zip(*decoded_clips([str(path) for path in sorted(paths)], SAMPLING_RATE))
    expected = extract_features(model, feature_extractor, decoded, names=names)
    for restored, clip in zip(loaded, expected):
        np.testing.assert_allclose(restored.utterance_embedding, clip.utterance_embedding, atol=1e-5)
        np.testing.assert_allclose(restored.frame_embeddings, clip.frame_embeddings, atol=1e-5)

    # The output is not overwritten by accident, and inputs come from files or a data set, not both.
    with pytest.raises(SystemExit):
        extract_main(command[3:])
    with pytest.raises(SystemExit):
        extract_main(["--model_name_or_path", str(saved_model), "--output", str(tmp_path / "other"),
                      "--dataset_name", "x", str(tmp_path / "clips")])


def test_command_on_audiofolder_dataset(tmp_path, saved_model, clips):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    for index, audio in enumerate(clips):
        soundfile.write(data / f"clip{index}.wav", audio, SAMPLING_RATE)
    (data / "metadata.csv").write_text("file_name,label\nclip0.wav,x\nclip1.wav,y\nclip2.wav,x\n")
    output = tmp_path / "features"
    arguments = [
        "--model_name_or_path", str(saved_model), "--dataset_name", str(tmp_path / "data"), "--split_name", "train",
        "--format", "npy", "--device", "cpu", "--output", str(output),
    ]
    extract_main(arguments)
    loaded, _ = load_features(output)
    assert [Path(clip.name).name for clip in loaded] == ["clip0.wav", "clip1.wav", "clip2.wav"]
    assert [clip.frame_embeddings.shape[0] for clip in loaded] == list(CLIP_ROWS)

    # --overwrite replaces earlier features (no stale per-clip files survive) but never a folder of something else.
    extract_main(arguments + ["--max_samples", "1", "--overwrite"])
    assert len(load_features(output)[0]) == 1 and len(list((output / "frame_embeddings").iterdir())) == 1
    with pytest.raises(SystemExit, match="not features written by modeling_eat.extract"):
        extract_main([*arguments[:-2], "--output", str(data), "--overwrite"])
    assert (data / "metadata.csv").is_file()

    with pytest.raises(ValueError, match="--label_column_name 'genre' is not a column"):
        load_audio_dataset(str(tmp_path / "data"), split="train", label_column_name="genre")


def test_overwrite_never_deletes_what_the_extraction_did_not_write(tmp_path, saved_model, clips):
    folder = tmp_path / "clips"
    paths = sorted(write_clips(folder, clips))
    common = ["--model_name_or_path", str(saved_model), "--device", "cpu", str(folder)]
    # An input WAV or a text file given as --output: refused, whatever --overwrite says, and left as they were.
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    wav_bytes = paths[0].read_bytes()
    for victim in (paths[0], notes):
        with pytest.raises(SystemExit, match="is not features written by modeling_eat.extract, and --overwrite only"):
            extract_main([*common, "--output", str(victim), "--overwrite"])
    assert paths[0].read_bytes() == wav_bytes and notes.read_text() == "mine"

    # Good features and a typo in the model path: the model is refused before the features are touched.
    good = tmp_path / "features.safetensors"
    extract_main([*common, "--output", str(good)])
    before = good.read_bytes()
    typo = ["--model_name_or_path", str(tmp_path / "modle"), *common[2:]]
    with pytest.raises(SystemExit, match=rf"^error: --model_name_or_path {tmp_path / 'modle'}: no such folder"):
        extract_main([*typo, "--output", str(good), "--overwrite"])
    assert good.read_bytes() == before

    # A run that stops half-way leaves the old features whole: the new ones are written beside and moved in only
    # once complete.
    (folder / "b_corrupt.wav").write_bytes(os.urandom(2000))
    with pytest.raises(SystemExit, match=r"^error: stopped at a file that cannot be decoded .*b_corrupt.wav"):
        extract_main([*common, "--output", str(good), "--overwrite", "--on_undecodable", "fail"])
    assert good.read_bytes() == before
    # Finished, it replaces them; nothing half-written is left beside.
    extract_main([*common, "--output", str(good), "--overwrite", "--max_samples", "1"])
    assert len(load_features(good)[0]) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "clips", "features.partial.safetensors", "features.safetensors", "notes.txt"
    ]


def test_other_models_and_unlabelled_folders_are_named_in_one_line(tmp_path, saved_model, clips):
    folder = tmp_path / "clips"
    write_clips(folder, clips)
    ast = save_tiny_ast(tmp_path / "ast")
    not_eat = rf"^error: --model_name_or_path {ast} holds a model of type 'audio-spectrogram-transformer' \(ASTModel\)"
    with pytest.raises(SystemExit, match=not_eat + r", not EAT: pass an EAT folder or Hub id \(python -m"):
        extract_main(["--model_name_or_path", str(ast), "--output", str(tmp_path / "f.safetensors"), str(folder)])
    with pytest.raises(SystemExit, match=not_eat):
        probe_main(["--model_name_or_path", str(ast), "--dataset_name", str(folder)])
    # A mistyped input, named before the model loads; inputs none of which decode (once save_features' traceback).
    with pytest.raises(SystemExit) as error:
        extract_main(["--model_name_or_path", str(saved_model), "--output", str(tmp_path / "f.safetensors"),
                      str(tmp_path / "clipz")])
    assert error.value.code == (
        f"error: {tmp_path / 'clipz'} is neither a file nor a folder: check the path, and pass audio files or "
        "folders holding them."
    )
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(SystemExit) as error:
        extract_main(["--model_name_or_path", str(saved_model), "--output", str(tmp_path / "f.safetensors"),
                      str(tmp_path / "notes.txt")])
    assert error.value.code == (
        "error: nothing was written: none of the 1 inputs could be decoded (the warnings above say why): pass audio "
        "files (a clip of at least 25 ms that FFmpeg or soundfile reads)."
    )
    for option, value, message in (
        ("--layer", "99", "error: layer=99 does not exist: the model has "),
        ("--window_seconds", "1000", "error: window_seconds=1000.0 (100000 frames) is longer than the model takes"),
    ):
        with pytest.raises(SystemExit) as error:
            extract_main(["--model_name_or_path", str(saved_model), "--output", str(tmp_path / "f.safetensors"),
                          option, value, str(folder)])
        assert error.value.code.startswith(message)
        with pytest.raises(SystemExit) as error:
            probe_main(["--model_name_or_path", str(saved_model), "--dataset_name", str(folder), option, value])
        assert error.value.code.startswith(message)
    assert not (tmp_path / "f.safetensors").exists()

    # One class to probe (once a traceback after every clip was encoded), a split the data set lacks (named by the
    # probe's own option), and a regularization sklearn refuses.
    single = tmp_path / "single"
    for split in ("train", "test"):
        (single / split).mkdir(parents=True)
        for index, audio in enumerate(clips[:2]):
            soundfile.write(single / split / f"clip{index}.wav", audio, SAMPLING_RATE)
        (single / split / "metadata.csv").write_text("file_name,label\nclip0.wav,dog\nclip1.wav,dog\n")
    with pytest.raises(SystemExit) as error:
        probe_main(["--model_name_or_path", str(saved_model), "--dataset_name", str(single)])
    assert error.value.code == (
        f"error: {single} (train split): the training labels hold 1 class (dog); a probe needs at least two: label "
        "clips of two classes or more."
    )
    with pytest.raises(SystemExit) as error:
        probe_main(["--model_name_or_path", str(saved_model), "--dataset_name", str(single), "--eval_split_name",
                    "validation"])
    assert error.value.code == (
        f"error: --eval_split_name validation: {single} has no such split (it has train, test): pass one of those."
    )
    with pytest.raises(SystemExit) as error:
        parse_probe_args(["--model_name_or_path", "m", "--dataset_name", "d", "--regularization", "-1"])
    assert error.value.code == 2
    # A file of the user's named as --output_json or --confusion_matrix stays as it was (each was replaced).
    mine = tmp_path / "mine.json"
    picture = tmp_path / "holiday.png"
    refusals = {
        mine: "holds no linear probe's results, which are all this command replaces",
        picture: "is no figure of this package's, which are all a rerun replaces",
    }
    for path, option, content in ((mine, "--output_json", b'{"mine": 1}'),
                                  (picture, "--confusion_matrix", b"\x89PNG\r\n\x1a\n not a figure of ours")):
        path.write_bytes(content)
        with pytest.raises(SystemExit) as error:
            probe_main(["--model_name_or_path", str(saved_model), "--dataset_name", str(single), option, str(path)])
        assert error.value.code == f"error: {option} {path} exists and {refusals[path]}: choose another file."
        assert path.read_bytes() == content
    # An earlier probe's results are what a rerun replaces.
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"accuracy": 0.5, "chance": 0.5, "num_classes": 2, "pooling": "cls"}))
    assert is_probe_results(earlier) and not is_probe_results(mine) and not is_probe_results(tmp_path / "none.json")

    # An audiofolder without metadata.csv has a label column of None values.
    for split in ("train", "test"):
        (tmp_path / "unlabelled" / split).mkdir(parents=True)
        for index, audio in enumerate(clips):
            soundfile.write(tmp_path / "unlabelled" / split / f"clip{index}.wav", audio, SAMPLING_RATE)
    with pytest.raises(SystemExit, match=r"unlabelled \(train split\) has no labels in its 'label' column: an "
                                         r"audiofolder takes them from a metadata.csv"):
        probe_main(["--model_name_or_path", str(saved_model), "--dataset_name", str(tmp_path / "unlabelled"),
                    "--device", "cpu"])


def test_an_undecodable_file_in_the_middle_loses_no_finished_work(tmp_path, saved_model, clips, caplog):
    folder = tmp_path / "clips"
    paths = write_clips(folder, clips)
    corrupt = folder / "b_corrupt.wav"
    corrupt.write_bytes(os.urandom(2000))
    common = ["--model_name_or_path", str(saved_model), "--device", "cpu", "--batch_size", "8", str(folder)]

    # By default the file is skipped, the others are all written, and the end of the run names it.
    output = tmp_path / "features.safetensors"
    with caplog.at_level("WARNING"):
        extract_main([*common, "--output", str(output)])
    loaded, metadata = load_features(output)
    assert [clip.name for clip in loaded] == [str(path) for path in sorted(paths)]
    assert metadata["skipped_undecodable"] == [str(corrupt)]
    assert f"skipped 1 of 4 files that could not be decoded (the warnings above say why): {corrupt}" in caplog.text

    # Asked to stop at it, the run fails, and the clips before it (still waiting for a full batch) are kept.
    stopped = tmp_path / "stopped.safetensors"
    with pytest.raises(SystemExit) as error:
        extract_main([*common, "--output", str(stopped), "--on_undecodable", "fail"])
    assert error.value.code.startswith(
        f"error: stopped at a file that cannot be decoded (--on_undecodable fail): {corrupt}: "
    ) and error.value.code.endswith(
        "Fix or remove the file. Or pass --on_undecodable skip to leave such files out and list them."
    )
    assert not stopped.exists()
    kept, metadata = load_features(tmp_path / "stopped.partial.safetensors")
    assert [clip.name for clip in kept] == [str(sorted(paths)[0])]
    assert metadata["complete"] is False and "b_corrupt.wav" in metadata["stopped_by"]
    np.testing.assert_allclose(kept[0].frame_embeddings, loaded[0].frame_embeddings, atol=1e-5)

    # The former opt-in flag still parses (as the default).
    extract_main([*common, "--output", str(tmp_path / "again"), "--format", "npy", "--skip_undecodable"])
    assert len(load_features(tmp_path / "again")[0]) == 3


def test_option_names_match_the_other_scripts_and_old_spellings_still_parse(tmp_path):
    probe = parse_probe_args(["--model_name_or_path", "m", "--dataset_name", "d", "--train_split_name", "dev",
                              "--eval_split_name", "val", "--max_eval_samples", "3",
                              "--per_device_eval_batch_size", "4", "--num_threads", "1"])
    old = parse_probe_args(["--model_name_or_path", "m", "--dataset_name", "d", "--train_split", "dev",
                            "--test_split", "val", "--max_test_samples", "3", "--batch_size", "4",
                            "--num_threads", "1"])
    assert vars(probe) == vars(old)
    assert (probe.train_split_name, probe.eval_split_name, probe.max_eval_samples) == ("dev", "val", 3)
    extract = parse_extract_args(["--model_name_or_path", "m", "--dataset_name", "d", "--split", "test",
                                  "--output", str(tmp_path / "f.safetensors")])
    assert extract.split_name == "test" and extract.on_undecodable == "skip" and extract.num_threads is None


def test_linear_probe_separable_and_random():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [60, 30, 30])
    centres = 10.0 * rng.standard_normal((3, 16))
    features = centres[labels] + 0.1 * rng.standard_normal((120, 16))
    results = linear_probe(features[::2], labels[::2], features[1::2], labels[1::2])
    assert results["accuracy"] == 1.0
    assert results["chance"] == pytest.approx(0.5)  # class 0 is half of the test clips
    assert (results["num_train"], results["num_test"], results["num_classes"]) == (60, 60, 3)

    # Features unrelated to the labels: about chance (majority class 0 = 40% of both splits).
    random_labels = rng.choice(4, size=1200, p=[0.4, 0.2, 0.2, 0.2])
    random_features = rng.standard_normal((1200, 8))
    results = linear_probe(random_features[:600], random_labels[:600], random_features[600:], random_labels[600:])
    assert results["chance"] == pytest.approx(np.mean(random_labels[600:] == 0))
    assert abs(results["accuracy"] - results["chance"]) < 0.08

    with pytest.raises(ValueError, match="1 class"):
        linear_probe(features[:10], np.zeros(10), features[10:20], np.zeros(10))
    with pytest.raises(ValueError, match="same dim"):
        linear_probe(features, labels, features[:, :3], labels)


def test_pooled_features(model, feature_extractor, clips):
    features = extract_features(model, feature_extractor, clips)
    np.testing.assert_array_equal(pooled_features(features, "cls")[2], features[2].utterance_embedding)
    np.testing.assert_allclose(pooled_features(features, "mean")[1], features[1].frame_embeddings.mean(0))
    both = pooled_features(features, "cls+mean")
    assert both.shape == (len(clips), pooled_size("cls+mean", model.config.hidden_size)) == (len(clips), 128)
    np.testing.assert_array_equal(both[0], np.concatenate([features[0].utterance_embedding,
                                                           features[0].frame_embeddings.mean(0)]))
    with pytest.raises(ValueError, match="one of cls, mean, cls\\+mean, got 'max'"):
        pooled_features(features, "max")
    with pytest.raises(ValueError, match="got 'mean\\+cls'"):
        pooled_size("mean+cls", 64)


def test_batch_workers_and_device_are_checked_when_parsed(capsys):
    """Each was a traceback once the model had loaded (torch's DataLoader, or "Torch not compiled with CUDA")."""
    common = ["--model_name_or_path", "m", "--output", "f.safetensors", "clips"]
    cases = [
        (["--batch_size", "0"], "--per_device_eval_batch_size must be >= 1, got 0"),
        (["--num_workers", "-1"], "--num_workers must be >= 0, got -1"),
        (["--device", "gpu"], "--device gpu is not a device torch knows: pass auto, cpu, cuda or cuda:N"),
    ]
    if not torch.cuda.is_available():
        no_cuda = "--device cuda: this torch sees no CUDA device: pass --device cpu (or auto)"
        cases.append((["--device", "cuda"], no_cuda))
    for extra, message in cases:
        with pytest.raises(SystemExit) as error:
            parse_extract_args([*common, *extra])
        assert error.value.code == 2 and capsys.readouterr().err.strip().endswith(f"error: {message}")
