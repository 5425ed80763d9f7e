"""The evaluation harnesses' adapters: `modeling_eat.hear` (HEAR 2021's rules, checked here directly: hearvalidator
needs TensorFlow) and `modeling_eat.xares` (checked by X-ARES's own tools), over `modeling_eat.inference.embeddings`.
"""

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from modeling_eat import EATFeatureExtractor, EATModel, hear
from modeling_eat.inference.cli import extract_main
from modeling_eat.inference.embeddings import (
    DEFAULT_MODEL,
    MODEL_VARIABLE,
    hop_passes,
    load_embedder,
    resolve_model_name_or_path,
)
from modeling_eat.inference.features import extract_features

from eat_testing import SHARED_DIR, build, write_wav


HUB_PORT_FOLDER = SHARED_DIR / "fixtures" / "eat_reference" / "hub_port_finetune_tiny"
SAMPLING_RATE = 16000


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny random EAT encoder with its feature extractor, saved."""
    path = tmp_path_factory.mktemp("tiny_encoder")
    build(EATModel, seed=3).save_pretrained(path)
    EATFeatureExtractor.from_preset("audioset").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(folder):
    return hear.load_model(str(folder), device="cpu")


def noise(num_sounds: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """What hearvalidator feeds: uniform noise in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(num_sounds, int(seconds * SAMPLING_RATE), generator=generator) * 2 - 1


def chirps(num_sounds: int, seconds: float) -> torch.Tensor:
    """Sounds whose every patch row differs (a chirp rising at its own rate) in quiet noise, peaks below 1."""
    time = torch.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    generator = torch.Generator().manual_seed(1)
    rates = torch.arange(1, num_sounds + 1)[:, None] * 300.0
    return 0.4 * torch.sin(2 * np.pi * (200 + rates * time) * time) + 0.01 * torch.randn(
        num_sounds, len(time), generator=generator
    )


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0, 61.0])
def test_hear_rules(model, seconds):
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 16000 and isinstance(model.sample_rate, int)
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    audio = noise(2, seconds)

    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.dtype == torch.float32 and timestamps.dtype == torch.float32
    assert embeddings.shape == (2, timestamps.shape[1], model.timestamp_embedding_size)
    assert timestamps.shape == (2, embeddings.shape[1]) and timestamps.shape[1] > 1
    assert torch.isfinite(embeddings).all()
    steps = np.diff(timestamps.numpy(), axis=1)
    assert model.timestamp_hop_ms == 40.0  # HEAR suggests <= 50 ms
    assert np.abs(steps - steps.mean()).max() <= 1.0 and steps.mean() == pytest.approx(40.0, abs=1e-3)
    duration_ms = 1000 * audio.shape[1] / SAMPLING_RATE
    assert 0 <= timestamps.min() and timestamps.max() <= duration_ms
    # The last one within one hop of the end (the validator refuses a gap of two).
    assert timestamps.max() > duration_ms - model.timestamp_hop_ms
    # Centres of rows of 175 ms: the first at 87.5 ms.
    assert timestamps[0, 0] == pytest.approx(87.5)

    scene = hear.get_scene_embeddings(audio, model)
    assert scene.dtype == torch.float32 and scene.shape == (2, model.scene_embedding_size)
    assert not torch.equal(scene[0], scene[1])


def test_sounds_shorter_than_a_row_get_one_timestamp_at_their_midpoint(model):
    embeddings, timestamps = hear.get_timestamp_embeddings(noise(1, 0.05), model)
    assert embeddings.shape == (1, 1, 64) and timestamps.tolist() == [[25.0]]
    with pytest.raises(ValueError, match="shorter than one 25 ms fbank frame"):
        hear.get_timestamp_embeddings(noise(1, 0.02), model)


def test_native_hop_is_the_patch_rows_and_finer_hops_are_shifted_encodings(folder, model):
    """Timestamp `k * j + p` of a hop 160 / k ms is row `j` of the sound without its first `p * 16 / k` frames."""
    audio = chirps(1, 2.3)
    extractor = model.feature_extractor

    def rows(samples):
        return extract_features(model.encoder, extractor, [samples], always_window=True)[0].frame_embeddings

    native = load_embedder(str(folder), device="cpu", timestamp_hop_ms=160)
    embeddings, timestamps = native.timestamp_embeddings(audio)
    # 2.3 s: 228 frames, 15 rows; the last row (from 2240 ms) has its centre past the end and is dropped.
    assert timestamps[0].tolist() == [87.5 + 160 * row for row in range(14)]
    np.testing.assert_allclose(embeddings[0].numpy(), rows(audio[0].numpy())[:14], atol=1e-6)

    embeddings, timestamps = model.timestamp_embeddings(audio)
    assert embeddings.shape[1] == 56 and timestamps[0, -1] == pytest.approx(87.5 + 55 * 40)
    for shift in range(4):
        np.testing.assert_allclose(
            embeddings[0, shift::4].numpy(), rows(audio[0, 640 * shift :].numpy())[:14], atol=1e-6
        )


def test_embeddings_equal_the_extract_command(folder, tmp_path):
    """The same clip and layer through `python -m modeling_eat.extract` and the harnesses: the same numbers, windows
    included (12 s: a window of 1024 frames, the extractor's `max_length` the harnesses take, and one of 174)."""
    audio = chirps(1, 12.0)[0].numpy()
    wav = tmp_path / "clip.wav"
    write_wav(wav, audio, SAMPLING_RATE)
    output = tmp_path / "features.safetensors"
    extract_main([str(wav), "--model_name_or_path", str(folder), "--output", str(output), "--layer", "2",
                  "--always_window", "--window_seconds", "10.24", "--device", "cpu", "--num_threads", "1"])
    extracted = load_file(output)
    embedder = load_embedder(str(folder), device="cpu", scene_layer=2, timestamp_layer=2, timestamp_hop_ms=160,
                             scene_pooling="cls+mean")
    scene = embedder.scene_embeddings(torch.from_numpy(audio)[None])[0].numpy()
    np.testing.assert_allclose(scene[:64], extracted["utterance_embeddings"][0], atol=1e-6)
    np.testing.assert_allclose(scene[64:], extracted["frame_embeddings.0"].mean(0), atol=1e-6)
    embeddings, timestamps = embedder.timestamp_embeddings(torch.from_numpy(audio)[None])
    # 12 s: 1198 frames, 75 rows; the 75th (from 11.84 s, centre 11.9275 s) ends inside the clip and is kept.
    assert embeddings.shape == (1, 75, 64)
    np.testing.assert_allclose(embeddings[0].numpy(), extracted["frame_embeddings.0"], atol=1e-6)
    np.testing.assert_allclose(timestamps[0].numpy(), 1000 * extracted["frame_times.0"] + 87.5, atol=1e-3)


def test_a_batch_is_embedded_as_its_sounds_one_by_one(model):
    audio = chirps(3, 3.1)
    embeddings, timestamps = model.timestamp_embeddings(audio)
    scenes = model.scene_embeddings(audio)
    for index in range(3):
        alone, alone_timestamps = model.timestamp_embeddings(audio[index : index + 1])
        torch.testing.assert_close(embeddings[index], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(timestamps[index], alone_timestamps[0])
        torch.testing.assert_close(scenes[index], model.scene_embeddings(audio[index : index + 1])[0], atol=1e-5,
                                   rtol=0)


def test_audio_beyond_full_scale_is_divided_by_its_peak_and_audio_within_is_untouched(model):
    audio = chirps(2, 1.5)
    peaks = audio.abs().amax(dim=1, keepdim=True)
    loud = torch.cat([audio[:1] * 3.0, audio[1:] * 30000.0])  # over full scale, and int16 PCM left unscaled
    torch.testing.assert_close(model.scene_embeddings(loud), model.scene_embeddings(audio / peaks), atol=1e-5, rtol=0)
    # Within [-1, 1] nothing is scaled: the quieter original embeds differently from its peak-normalised copy.
    assert (model.scene_embeddings(audio) - model.scene_embeddings(audio / peaks)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="sound 1 holds NaN or infinite samples"):
        model.scene_embeddings(torch.cat([audio[:1], torch.full_like(audio[:1], float("nan"))]))


def test_bad_input_and_settings_are_refused_with_the_fix(folder, model):
    with pytest.raises(ValueError, match=r"\[n_sounds, n_samples\], got shape \(16000,\): pass one sound as"):
        model.scene_embeddings(torch.zeros(16000))
    with pytest.raises(ValueError, match="got torch.int16: convert 16-bit PCM"):
        model.timestamp_embeddings(torch.zeros(1, 16000, dtype=torch.int16))
    with pytest.raises(ValueError, match="timestamp_hop_ms=50 is not a patch row .* pass one of 160, 80, 40, 20, 10"):
        load_embedder(str(folder), device="cpu", timestamp_hop_ms=50)
    with pytest.raises(ValueError, match="scene_pooling must be one of cls, mean, cls\\+mean"):
        load_embedder(str(folder), device="cpu", scene_pooling="max")
    with pytest.raises(ValueError, match="layer=4 does not exist"):
        load_embedder(str(folder), device="cpu", scene_layer=4)
    with pytest.raises(ValueError, match="window_seconds=200 .* is longer than the model takes"):
        load_embedder(str(folder), device="cpu", window_seconds=200)
    assert model.scene_embeddings(torch.zeros(0, 16000)).shape == (0, 64)
    assert [hop_passes(hop, 16) for hop in (160, 80, 40, 20, 10)] == [1, 2, 4, 8, 16]


def test_settings_are_overridable_through_load_model(folder):
    model = hear.load_model(str(folder), device="cpu", scene_layer=1, scene_pooling="cls+mean", timestamp_hop_ms=80)
    assert (model.scene_layer, model.scene_embedding_size, model.timestamp_hop_ms) == (1, 128, 80.0)
    assert "scene: layer 1, cls+mean; timestamps: layer 3, every 80 ms; windows of 10.24 s, 8 per pass" in repr(model)
    assert hear.get_scene_embeddings(noise(2, 1.0), model).shape == (2, 128)


def test_the_model_comes_from_the_argument_the_environment_or_the_official_checkpoint(folder, monkeypatch):
    monkeypatch.delenv(MODEL_VARIABLE, raising=False)
    assert resolve_model_name_or_path() == resolve_model_name_or_path("") == DEFAULT_MODEL
    assert DEFAULT_MODEL == "worstchan/EAT-base_epoch30_pretrain"
    monkeypatch.setenv(MODEL_VARIABLE, str(folder))
    assert resolve_model_name_or_path("") == str(folder)
    assert resolve_model_name_or_path("other/model") == "other/model"
    model = hear.load_model(device="cpu")
    reference = EATModel.from_pretrained(folder)
    torch.testing.assert_close(model.encoder.state_dict(), reference.state_dict())


def test_the_official_hub_port_layout_loads_natively():
    model = hear.load_model(str(HUB_PORT_FOLDER), device="cpu")
    assert (model.scene_embedding_size, model.timestamp_embedding_size) == (64, 64)
    embeddings, _ = hear.get_timestamp_embeddings(noise(1, 1.0), model)
    # 1 s: centres every 640 samples from 1400, the 23rd at 15480.
    assert embeddings.shape == (1, 23, 64) and torch.isfinite(embeddings).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_embeddings_stay_on_the_model_device(folder, model):
    on_gpu = hear.load_model(str(folder), device="cuda")
    audio = chirps(2, 12.5)
    embeddings, timestamps = hear.get_timestamp_embeddings(audio.cuda(), on_gpu)
    scene = hear.get_scene_embeddings(audio.cuda(), on_gpu)
    assert embeddings.device.type == timestamps.device.type == scene.device.type == "cuda"
    expected, _ = hear.get_timestamp_embeddings(audio, model)
    torch.testing.assert_close(embeddings.cpu(), expected, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(scene.cpu(), hear.get_scene_embeddings(audio, model), atol=1e-3, rtol=1e-3)


def test_xares_checker_and_loader_accept_the_encoder(folder, monkeypatch):
    from xares.audio_encoder_checker import check_audio_encoder
    from xares.utils import attr_from_py_path

    from modeling_eat.xares import EATEncoder

    assert attr_from_py_path("modeling_eat.xares", endswith="Encoder") is EATEncoder
    assert attr_from_py_path("modeling_eat/xares.py", endswith="Encoder") is EATEncoder
    encoder = EATEncoder(model_name_or_path=str(folder), device="cpu")
    assert (encoder.sampling_rate, encoder.output_dim, encoder.hop_size_in_ms) == (16000, 64, 160.0)
    assert check_audio_encoder(encoder) is True

    # What X-ARES does: no arguments (the model from the environment), a zero-padded batch.
    monkeypatch.setenv(MODEL_VARIABLE, str(folder))
    encoder = attr_from_py_path("modeling_eat.xares", endswith="Encoder")()
    audio = chirps(2, 3.125)
    audio[1, 30000:] = 0
    output = encoder(audio)
    # 50000 samples: row centres every 2560 samples from 1400, the 19th at 47480.
    assert output.shape == (2, 19, 64) and output.dtype == torch.float32
    assert not torch.equal(output[0], output[1])
