"""EATFeatureExtractor and kaldi_fbank: parity with torchaudio's Kaldi fbank (reference fixtures), batching, dtypes,
serialization, presets and input validation."""

import json
import logging

import numpy as np
import pytest
import torch

from modeling_eat import feature_extraction_eat
from modeling_eat.feature_extraction_eat import (
    NORMALIZATION_PRESETS,
    EATFeatureExtractor,
    kaldi_fbank,
    kaldi_num_frames,
)

from eat_testing import SAMPLING_RATE


AUDIOSET_MEAN, AUDIOSET_STD = -4.268, 4.569
CASES = [
    "noise_sine_10s",
    "chirp_5s",
    "noise_1s",
    "short_0p3s",
    "dc_offset_2s",
    "long_13s",
    "fsdd_3_theo_7",
    "fsdd_8_jackson_12",
]

# Parity tolerance, in log-mel units. It holds on every cell whose energy is within RESOLVABLE_RANGE nats (~70 dB)
# of its frame's loudest mel bin. Further down, a bin's energy is below the rounding noise of a float32 FFT of that
# frame, and two correct float32 implementations differ there by up to ~1e-2: the reference itself is ~6e-3 away
# from a float64 computation on chirp_5s, where 90% of the cells of the pure tone lie > 16 nats down. Those cells
# are held to NOISE_FLOOR_TOLERANCE.
TOLERANCE = 1e-3
NOISE_FLOOR_TOLERANCE = 1e-2
RESOLVABLE_RANGE = 16.0



@pytest.fixture(scope="module")
def reference(fixtures_dir):
    with np.load(fixtures_dir / "fbank_reference.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def waves(reference):
    return [reference[f"{name}/wave"] for name in CASES]


def assert_matches_reference(actual, expected, reference_raw, scale=1.0):
    """Compares `actual` to `expected` (both in units of `reference_raw / scale`) with the tolerances above."""
    resolvable = reference_raw >= reference_raw.max(axis=-1, keepdims=True) - RESOLVABLE_RANGE
    error = np.abs(np.asarray(actual, dtype=np.float64) - expected)
    assert error[resolvable].max() <= TOLERANCE / scale
    assert error.max() <= NOISE_FLOOR_TOLERANCE / scale


def padded_reference_raw(reference, name):
    """The raw reference fbank cropped or zero-padded to the case's target length, as EAT pads it."""
    raw, target_length = reference[f"{name}/raw"], int(reference[f"{name}/target_length"])
    padded = np.zeros((target_length, raw.shape[1]), dtype=raw.dtype)
    padded[: min(len(raw), target_length)] = raw[:target_length]
    return padded


def test_fixture_cases_are_the_tested_ones(reference):
    assert {key.split("/")[0] for key in reference} == set(CASES)


# Measured worst |kaldi_fbank - raw| on this machine (torch 2.13 CPU, MKL), resolvable cells / all cells:
# noise_sine_10s 2.5e-4 / 3.6e-4, chirp_5s 3.2e-4 / 7.1e-3, noise_1s 2.7e-4 / 2.7e-4, short_0p3s 1.6e-4 / 1.6e-4,
# dc_offset_2s 1.9e-4 / 1.9e-4, long_13s 2.8e-4 / 7.5e-4, fsdd_3_theo_7 4.2e-5 / 4.2e-5,
# fsdd_8_jackson_12 1.8e-4 / 3.7e-4. Worst: 7.1e-3 on chirp_5s (noise floor), 3.2e-4 on resolvable cells.
@pytest.mark.parametrize("name", CASES)
def test_kaldi_fbank_matches_torchaudio_reference(reference, name):
    raw = reference[f"{name}/raw"]
    fbank = kaldi_fbank(torch.from_numpy(reference[f"{name}/wave"]), sampling_rate=SAMPLING_RATE, num_mel_bins=128)
    assert fbank.dtype == torch.float32
    assert fbank.shape == raw.shape
    assert_matches_reference(fbank.numpy(), raw, raw)


# Measured worst |input_values - norm_as| (all cells): noise_sine_10s 3.9e-5, chirp_5s 7.8e-4, noise_1s 3.0e-5,
# short_0p3s 1.7e-5, dc_offset_2s 2.1e-5, long_13s 8.2e-5, fsdd_3_theo_7 4.6e-6, fsdd_8_jackson_12 4.1e-5.
# Worst: 7.8e-4 on chirp_5s; 3.5e-5 (chirp_5s) on resolvable cells.
@pytest.mark.parametrize("name", CASES)
def test_extractor_matches_eat_reference(reference, name):
    target_length = int(reference[f"{name}/target_length"])
    extractor = EATFeatureExtractor(mean=AUDIOSET_MEAN, std=AUDIOSET_STD, max_length=target_length)
    features = extractor(reference[f"{name}/wave"], sampling_rate=SAMPLING_RATE, return_tensors="np")
    input_values = features["input_values"]
    assert input_values.shape == (1, target_length, 128)
    assert input_values.dtype == np.float32
    assert_matches_reference(
        input_values[0], reference[f"{name}/norm_as"], padded_reference_raw(reference, name), 2 * AUDIOSET_STD
    )


def test_padded_frames_hold_normalized_zero(reference):
    features = EATFeatureExtractor()(reference["short_0p3s/wave"], sampling_rate=SAMPLING_RATE)
    num_frames = kaldi_num_frames(len(reference["short_0p3s/wave"]))
    padding = features["input_values"][0, num_frames:]
    np.testing.assert_allclose(padding, -AUDIOSET_MEAN / (2 * AUDIOSET_STD), rtol=1e-6)
    assert np.all(features["input_values"][0, :num_frames] != padding[0])


# Measured here: batched and per-item results are bit-identical (max diff 0.0).
def test_batch_of_different_lengths_equals_per_item(waves):
    extractor = EATFeatureExtractor()
    batch = extractor(waves, sampling_rate=SAMPLING_RATE, return_attention_mask=True)
    assert batch["input_values"].shape == (len(waves), 1024, 128)
    for index, wave in enumerate(waves):
        single = extractor(wave, sampling_rate=SAMPLING_RATE)["input_values"][0]
        np.testing.assert_allclose(batch["input_values"][index], single, rtol=0, atol=1e-4)


def test_kaldi_fbank_ignores_padding_samples(waves):
    lengths = [len(wave) for wave in waves]
    padded = torch.full((len(waves), max(lengths)), float("nan"))
    for index, wave in enumerate(waves):
        padded[index, : len(wave)] = torch.from_numpy(wave)
    batch = kaldi_fbank(padded, lengths=lengths)
    assert batch.shape == (len(waves), kaldi_num_frames(max(lengths)), 128)
    for index, wave in enumerate(waves):
        single = kaldi_fbank(torch.from_numpy(wave))
        torch.testing.assert_close(batch[index, : len(single)], single, rtol=0, atol=1e-4)
        assert torch.all(batch[index, len(single) :] == 0)


def test_kaldi_fbank_chunking_does_not_change_results(waves, monkeypatch):
    # CPU and GPU differ only in chunk size; 7-frame chunks split every clip and never group two.
    lengths = [len(wave) for wave in waves]
    padded = torch.zeros(len(waves), max(lengths))
    for index, wave in enumerate(waves):
        padded[index, : len(wave)] = torch.from_numpy(wave)
    default = kaldi_fbank(padded, lengths=lengths)
    monkeypatch.setattr(feature_extraction_eat, "_CPU_CHUNK_FRAMES", 7)
    torch.testing.assert_close(kaldi_fbank(padded, lengths=lengths), default, rtol=0, atol=1e-4)


def test_kaldi_fbank_max_frames_crops(reference):
    wave = torch.from_numpy(reference["long_13s/wave"])
    cropped = kaldi_fbank(wave, max_frames=100)
    assert cropped.shape == (100, 128)
    torch.testing.assert_close(cropped, kaldi_fbank(wave)[:100], rtol=0, atol=1e-4)


def test_attention_mask_counts_real_frames(waves):
    extractor = EATFeatureExtractor(return_attention_mask=True)
    for max_length in (128, 1024):
        features = extractor(waves, sampling_rate=SAMPLING_RATE, max_length=max_length)
        mask = features["attention_mask"]
        assert mask.shape == (len(waves), max_length)
        expected = [min(kaldi_num_frames(len(wave)), max_length) for wave in waves]
        assert mask.sum(axis=1).tolist() == expected
        # Real frames first, then padding.
        assert all(np.all(row[:count] == 1) and np.all(row[count:] == 0) for row, count in zip(mask, expected))


def test_attention_mask_only_when_asked(waves):
    assert "attention_mask" not in EATFeatureExtractor()(waves[0], sampling_rate=SAMPLING_RATE)
    features = EATFeatureExtractor()(waves[0], sampling_rate=SAMPLING_RATE, return_attention_mask=True)
    assert "attention_mask" in features
    assert "attention_mask" not in EATFeatureExtractor(return_attention_mask=True)(
        waves[0], sampling_rate=SAMPLING_RATE, return_attention_mask=False
    )


def test_int16_equals_float_over_32768(reference):
    wave = reference["fsdd_8_jackson_12/wave"]  # real speech decoded from 16-bit PCM
    pcm = np.clip(np.round(wave * 32768), -32768, 32767).astype(np.int16)
    extractor = EATFeatureExtractor()
    from_float = extractor(pcm.astype(np.float32) / 32768, sampling_rate=SAMPLING_RATE)["input_values"]
    from_numpy_int16 = extractor(pcm, sampling_rate=SAMPLING_RATE)["input_values"]
    from_torch_int16 = extractor(torch.from_numpy(pcm), sampling_rate=SAMPLING_RATE)["input_values"]
    np.testing.assert_allclose(from_numpy_int16, from_float, rtol=0, atol=1e-6)
    np.testing.assert_allclose(from_torch_int16, from_float, rtol=0, atol=1e-6)


def test_torch_and_numpy_inputs_agree(waves):
    extractor = EATFeatureExtractor(return_attention_mask=True)
    from_numpy = extractor(waves, sampling_rate=SAMPLING_RATE, return_tensors="np")
    from_torch = extractor([torch.from_numpy(w) for w in waves], sampling_rate=SAMPLING_RATE, return_tensors="pt")
    assert isinstance(from_torch["input_values"], torch.Tensor)
    assert from_torch["input_values"].dtype == torch.float32
    np.testing.assert_allclose(from_torch["input_values"].numpy(), from_numpy["input_values"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(from_torch["attention_mask"].numpy(), from_numpy["attention_mask"])

    # A 2-D torch batch (equal lengths) equals the list form.
    equal_length = np.stack([w[:16000] for w in waves if len(w) >= 16000])
    as_list = extractor(list(equal_length), sampling_rate=SAMPLING_RATE)["input_values"]
    as_tensor = extractor(torch.from_numpy(equal_length), sampling_rate=SAMPLING_RATE, return_tensors="pt")
    np.testing.assert_allclose(as_tensor["input_values"].numpy(), as_list, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes(reference, dtype):
    wave = reference["noise_1s/wave"]
    extractor = EATFeatureExtractor(max_length=128)
    expected = extractor(wave.astype(dtype).astype(np.float32), sampling_rate=SAMPLING_RATE)["input_values"]
    actual = extractor(wave.astype(dtype), sampling_rate=SAMPLING_RATE)["input_values"]
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_return_types(reference):
    extractor = EATFeatureExtractor(max_length=128, return_attention_mask=True)
    wave = reference["noise_1s/wave"]
    for return_tensors in (None, "np"):
        features = extractor(wave, sampling_rate=SAMPLING_RATE, return_tensors=return_tensors)
        assert isinstance(features["input_values"], np.ndarray)
        assert features["input_values"].dtype == np.float32
        assert features["attention_mask"].dtype == np.int32
    features = extractor(torch.from_numpy(wave), sampling_rate=SAMPLING_RATE, return_tensors="pt")
    assert features["input_values"].dtype == torch.float32
    assert features["attention_mask"].dtype == torch.long


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_input_stays_on_gpu_and_matches_cpu(waves):
    extractor = EATFeatureExtractor(return_attention_mask=True)
    on_gpu = extractor([torch.from_numpy(w).cuda() for w in waves], sampling_rate=SAMPLING_RATE, return_tensors="pt")
    on_cpu = extractor(waves, sampling_rate=SAMPLING_RATE, return_tensors="pt")
    assert on_gpu["input_values"].is_cuda and on_gpu["attention_mask"].is_cuda
    # cuFFT rounds differently from the CPU FFT: same noise-floor allowance as the reference tests.
    assert_matches_reference(
        on_gpu["input_values"].cpu().numpy(),
        on_cpu["input_values"].numpy(),
        on_cpu["input_values"].numpy() * 2 * AUDIOSET_STD + AUDIOSET_MEAN,
        2 * AUDIOSET_STD,
    )
    torch.testing.assert_close(on_gpu["attention_mask"].cpu(), on_cpu["attention_mask"])


def test_save_and_load_round_trip(tmp_path, reference):
    extractor = EATFeatureExtractor.from_preset("esc50", return_attention_mask=True)
    wave = reference["chirp_5s/wave"]
    before = extractor(wave, sampling_rate=SAMPLING_RATE)  # fills the fbank constant cache first
    extractor.save_pretrained(tmp_path)

    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["feature_extractor_type"] == "EATFeatureExtractor"
    assert (saved["mean"], saved["std"], saved["max_length"]) == (-6.627, 5.359, 512)
    assert not any(isinstance(value, (torch.Tensor, np.ndarray)) for value in extractor.to_dict().values())

    loaded = EATFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    assert (loaded.mean, loaded.std, loaded.max_length, loaded.return_attention_mask) == (-6.627, 5.359, 512, True)
    after = loaded(wave, sampling_rate=SAMPLING_RATE)
    np.testing.assert_array_equal(after["input_values"], before["input_values"])
    np.testing.assert_array_equal(after["attention_mask"], before["attention_mask"])


@pytest.mark.parametrize(
    "name, mean, std, max_length",
    [("audioset", -4.268, 4.569, 1024), ("esc50", -6.627, 5.359, 512), ("spc2", -6.846, 5.565, 128)],
)
def test_presets(reference, name, mean, std, max_length):
    extractor = EATFeatureExtractor.from_preset(name)
    assert (extractor.mean, extractor.std, extractor.max_length) == (mean, std, max_length)
    assert NORMALIZATION_PRESETS[name] == {"mean": mean, "std": std, "max_length": max_length}
    features = extractor(reference["noise_1s/wave"], sampling_rate=SAMPLING_RATE)
    assert features["input_values"].shape == (1, max_length, 128)
    # 1 s of audio has 98 frames, fewer than any preset's length: the last frame is padding, normalized by the preset.
    np.testing.assert_allclose(features["input_values"][0, -1], -mean / (2 * std), rtol=1e-6)


def test_default_is_audioset():
    default, audioset = EATFeatureExtractor(), EATFeatureExtractor.from_preset("audioset")
    assert default.to_dict() == audioset.to_dict()


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="'audioset', 'esc50', 'spc2'"):
        EATFeatureExtractor.from_preset("librispeech")


# --- bad input: a ValueError naming the problem and the fix ---------------------------------------------------


@pytest.fixture(scope="module")
def second():
    return np.random.default_rng(0).standard_normal(SAMPLING_RATE).astype(np.float32) * 0.1


def test_wrong_sampling_rate_says_how_to_resample(second):
    with pytest.raises(ValueError, match=r"44100 Hz.*16000 Hz") as error:
        EATFeatureExtractor()(second, sampling_rate=44100)
    message = str(error.value)
    assert "librosa.resample" in message
    assert "torchaudio.functional.resample" in message
    assert 'cast_column("audio", Audio(sampling_rate=16000))' in message


def logged_call(extractor, raw_speech, **kwargs):
    """`extractor(raw_speech, **kwargs)` and the messages it logged."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("modeling_eat.feature_extraction_eat")
    logger.addHandler(handler)
    try:
        features = extractor(raw_speech, **kwargs)
    finally:
        logger.removeHandler(handler)
    return features, [record.getMessage() for record in records]


def test_missing_sampling_rate_only_warns(second):
    features, messages = logged_call(EATFeatureExtractor(), second)
    assert features["input_values"].shape == (1, 1024, 128)
    assert any("sampling_rate" in message for message in messages)


@pytest.mark.parametrize(
    "make_input, pattern",
    [
        # soundfile layout (samples, channels), as one clip and inside a batch
        (lambda x: np.stack([x, x], axis=1), r"channels on axis 1.*\.mean\(axis=1\)"),
        (lambda x: [x, np.stack([x, x], axis=1)], r"batch item 1 .*channels on axis 1.*\.mean\(axis=1\)"),
        # torchaudio layout (channels, samples) inside a batch, and a 3-D batch
        (lambda x: [torch.from_numpy(np.stack([x, x]))], r"batch item 0 .*channels on axis 0.*\.mean\(dim=0\)"),
        (lambda x: torch.from_numpy(np.stack([x, x]))[None].repeat(3, 1, 1), r"channels on axis 1.*\.mean\(axis=1\)"),
    ],
)
def test_multichannel_audio_says_how_to_downmix(second, make_input, pattern):
    with pytest.raises(ValueError, match=pattern):
        EATFeatureExtractor()(make_input(second), sampling_rate=SAMPLING_RATE)


def test_empty_audio_names_the_item(second):
    with pytest.raises(ValueError, match=r"batch item 1 is empty \(0 samples\).*pad it with zeros"):
        EATFeatureExtractor()([second, np.zeros(0, dtype=np.float32)], sampling_rate=SAMPLING_RATE)


def test_audio_shorter_than_a_frame_names_the_item_and_length(second):
    pattern = r"batch item 2 has 399 samples \(24.9 ms\).*Pad it with zeros to at least 400"
    with pytest.raises(ValueError, match=pattern):
        EATFeatureExtractor()([second, second, second[:399]], sampling_rate=SAMPLING_RATE)
    # Exactly one frame is fine.
    features = EATFeatureExtractor(return_attention_mask=True)(second[:400], sampling_rate=SAMPLING_RATE)
    assert features["attention_mask"].sum() == 1


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("as_batch_tensor", [False, True])
def test_non_finite_samples_name_the_item(second, bad_value, as_batch_tensor):
    broken = second.copy()
    broken[1234] = bad_value
    clips = [second, second, broken]
    raw_speech = torch.from_numpy(np.stack(clips)) if as_batch_tensor else clips
    with pytest.raises(ValueError, match=r"batch item 2 contains NaN or infinite samples.*nan_to_num"):
        EATFeatureExtractor()(raw_speech, sampling_rate=SAMPLING_RATE)


@pytest.mark.parametrize(
    "make_input, dtype_name",
    [
        (lambda x: (x * 2**20).astype(np.int32), "int32"),
        (lambda x: ((x + 1) * 127).astype(np.uint8), "uint8"),
        (lambda x: torch.from_numpy((x * 32768).astype(np.int64)), "torch.int64"),
        (lambda x: [x, x > 0], "bool"),
    ],
)
def test_integer_dtypes_other_than_int16_are_rejected(second, make_input, dtype_name):
    with pytest.raises(ValueError, match=rf"dtype {dtype_name}; expected float audio in \[-1, 1\] or int16 PCM"):
        EATFeatureExtractor()(make_input(second), sampling_rate=SAMPLING_RATE)


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_a_2d_numpy_array_is_ambiguous_and_refused(second, dtype):
    # [2, N]: a stereo clip (channels first) or two mono clips? Guessing would silently change what is classified.
    stereo = (np.stack([second, 0.5 * second]) * (32767 if dtype == np.int16 else 1)).astype(dtype)
    extractor = EATFeatureExtractor()
    pattern = r"2-D numpy array of shape \(2, 16000\).*`audio\.mean\(axis=0\)`.*`list\(audio\)`"
    with pytest.raises(ValueError, match=pattern):
        extractor(stereo, sampling_rate=SAMPLING_RATE)
    # Both ways out work: a down-mix is one clip, a list is a batch.
    assert extractor(stereo.mean(axis=0).astype(dtype), sampling_rate=SAMPLING_RATE)["input_values"].shape[0] == 1
    assert extractor(list(stereo), sampling_rate=SAMPLING_RATE)["input_values"].shape[0] == 2


@pytest.mark.parametrize("as_batch_tensor", [False, True])
def test_int16_values_stored_as_float_name_the_scaling(second, as_batch_tensor):
    pcm_as_float = np.round(second * 32767).astype(np.float32)  # int16 values, float dtype
    clips = [second, pcm_as_float]
    raw_speech = torch.from_numpy(np.stack(clips)) if as_batch_tensor else clips
    with pytest.raises(ValueError, match=r"batch item 1 has float samples up to \d+, far outside \[-1, 1\].*/ 32768"):
        EATFeatureExtractor()(raw_speech, sampling_rate=SAMPLING_RATE)
    # Audio a little over full scale (gain, resampling overshoot) is still audio.
    EATFeatureExtractor()(np.clip(second * 40, -1.5, 1.5), sampling_rate=SAMPLING_RATE)


def crop_messages(extractor, raw_speech, **kwargs) -> list[str]:
    _, messages = logged_call(extractor, raw_speech, sampling_rate=SAMPLING_RATE, **kwargs)
    return [message for message in messages if "crops" in message]


def test_cropping_long_audio_warns_once_naming_the_crop_and_the_long_audio_path(second):
    # max_length values of this test only: the warning is logged once per distinct text.
    extractor = EATFeatureExtractor(max_length=48)
    long_clip = np.tile(second, 3)  # 3 s, 298 frames
    messages = crop_messages(extractor, long_clip)
    assert len(messages) == 1
    assert "max_length=48 frames to its first 0.49 s" in messages[0]
    assert 'pipeline("audio-classification", model=..., chunk_length_s=...)' in messages[0]
    assert crop_messages(extractor, long_clip) == []  # once, not every batch
    assert crop_messages(EATFeatureExtractor(max_length=400), long_clip) == []  # nothing cropped: silent
    assert crop_messages(EATFeatureExtractor(max_length=64), long_clip, truncation=True) == []
    with pytest.raises(ValueError, match=r"a clip has 298 frames \(3\.0 s\), more than max_length=80 frames"):
        EATFeatureExtractor(max_length=80)(long_clip, sampling_rate=SAMPLING_RATE, truncation=False)


def test_waveform_rms_makes_the_features_independent_of_the_recording_level(tmp_path):
    rng = np.random.default_rng(0)
    quiet = (0.01 * rng.standard_normal(12000)).astype(np.float32)
    short = (0.2 * rng.standard_normal(5000)).astype(np.float32)
    extractor = EATFeatureExtractor(max_length=96, waveform_rms=0.05)
    batch = extractor([quiet, short], sampling_rate=16000, return_tensors="pt")["input_values"]
    louder = extractor([5 * quiet, 0.1 * short], sampling_rate=16000, return_tensors="pt")["input_values"]
    torch.testing.assert_close(batch, louder, rtol=0, atol=1e-4)
    # The same as scaling each clip to RMS 0.05 by hand; padding frames keep EAT's padding value.
    by_hand = EATFeatureExtractor(max_length=96)(
        [quiet * (0.05 / np.sqrt(np.mean(quiet**2))), short * (0.05 / np.sqrt(np.mean(short**2)))],
        sampling_rate=16000, return_tensors="pt",
    )["input_values"]
    torch.testing.assert_close(batch, by_hand, rtol=0, atol=1e-4)
    without = EATFeatureExtractor(max_length=96)([quiet], sampling_rate=16000, return_tensors="pt")["input_values"]
    # Without it a 14 dB quieter clip is shifted by 2 ln(5) in log energy: 0.35 after the (x - mean) / (2 std).
    assert (without - batch[:1]).abs().max() > 0.3
    silence = extractor(np.zeros(4000, dtype=np.float32), sampling_rate=16000)["input_values"]
    assert np.isfinite(silence).all()

    extractor.save_pretrained(tmp_path)
    assert EATFeatureExtractor.from_pretrained(tmp_path).waveform_rms == 0.05
    with pytest.raises(ValueError, match="waveform_rms must be a positive level"):
        EATFeatureExtractor(waveform_rms=0.0)
