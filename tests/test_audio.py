"""The shared audio module (modeling_eat/audio.py): decoding to 16 kHz mono, resampling, crops, data set loading and
the frame geometry."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from modeling_eat.audio import (
    AudioDecodingError,
    crop_num_frames,
    decode_audio,
    labelled_subset,
    load_audio_dataset,
    random_crop,
    seconds_to_samples,
)
from modeling_eat.audio_io_eat import resample
from modeling_eat.feature_extraction_eat import (
    frames_to_seconds,
    kaldi_num_frames,
    kaldi_num_samples,
    patch_aligned,
    seconds_to_frames,
)

from eat_testing import tone, write_wav


def peak_frequency(waveform: np.ndarray, sampling_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.argmax(spectrum) * sampling_rate / len(waveform))



# ---------------------------------------------------------------------------------------------- decoding, resampling


@pytest.mark.parametrize("source_rate", [8000, 44100])
def test_decoding_resamples_to_16k_and_keeps_the_tone(tmp_path, source_rate):
    audio = write_wav(tmp_path / "tone.wav", tone(1000.0, source_rate, 1.0), source_rate)
    waveform = decode_audio(audio)
    assert waveform.dtype == np.float32 and waveform.shape == (16000,)
    assert peak_frequency(waveform, 16000) == pytest.approx(1000.0, abs=1.0)
    # Away from the edges the resampled tone is the 16 kHz tone itself: amplitude and phase are kept.
    np.testing.assert_allclose(waveform[400:-400], tone(1000.0, 16000, 1.0)[400:-400], atol=2e-3)


def test_resampling_removes_content_above_the_new_nyquist():
    # 7 kHz survives 44.1 -> 16 kHz; 10 kHz lies above 8 kHz and must not alias down to 6 kHz.
    mixture = tone(7000.0, 44100, 1.0) + tone(10000.0, 44100, 1.0)
    resampled = resample(torch.from_numpy(mixture), 44100, 16000).numpy()
    spectrum = np.abs(np.fft.rfft(resampled[1000:-1000]))
    bin_of = lambda hz: int(round(hz * (len(resampled) - 2000) / 16000))  # noqa: E731
    assert spectrum[bin_of(6000)] < 1e-2 * spectrum[bin_of(7000)]


def test_bytes_and_the_torchcodec_fallback_decode(tmp_path):
    from torchcodec.encoders import AudioEncoder

    # soundfile cannot read AAC in an MP4 container: this one goes through torchcodec (with resampling to 16 kHz).
    path = tmp_path / "tone.m4a"
    AudioEncoder(torch.from_numpy(tone(440.0, 22050, 1.0))[None], sample_rate=22050).to_file(str(path))
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.read(path)
    waveform = decode_audio({"bytes": path.read_bytes(), "path": "tone.m4a"})
    assert abs(len(waveform) - 16000) < 1600
    assert peak_frequency(waveform, 16000) == pytest.approx(440.0, abs=2.0)


def test_multichannel_audio_is_down_mixed(tmp_path):
    left = tone(500.0, 16000, 0.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    waveform = decode_audio(write_wav(tmp_path / "stereo.wav", stereo, 16000))
    np.testing.assert_allclose(waveform, 0.5 * left, atol=1e-7)


def test_corrupt_empty_and_too_short_files_are_rejected(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path in (corrupt, empty):
        with pytest.raises(AudioDecodingError, match="soundfile failed .* torchcodec failed"):
            decode_audio({"bytes": None, "path": str(path)})
    with pytest.raises(AudioDecodingError, match="shorter than one 25 ms frame"):
        decode_audio(write_wav(tmp_path / "short.wav", tone(440.0, 16000, 0.01), 16000))
    with pytest.raises(AudioDecodingError, match="neither audio bytes nor a path"):
        decode_audio({"bytes": None, "path": None})


# -------------------------------------------------------------------------------------------------- crops, geometry


def test_crop_lengths_are_whole_patches():
    assert crop_num_frames(10.0) == 992  # 998 Kaldi frames, rounded down to 62 patches
    assert crop_num_frames(1.0) == 96
    with pytest.raises(ValueError, match="fewer fbank frames than one patch"):
        crop_num_frames(0.1)
    long = np.arange(50000, dtype=np.float32)
    window = random_crop(long, 16000, np.random.default_rng(3))
    assert window.shape == (16000,) and np.all(np.diff(window) == 1)  # one contiguous window
    short = long[:5000]
    assert random_crop(short, 16000, np.random.default_rng(3)) is short


def test_frame_geometry_round_trips():
    assert seconds_to_samples(1.0) == 16000 and seconds_to_samples(0.5, 8000) == 4000
    assert seconds_to_frames(10.0) == 1000 and frames_to_seconds(16) == pytest.approx(0.16)
    np.testing.assert_allclose(frames_to_seconds(np.arange(3) * 16), [0.0, 0.16, 0.32])
    # A clip of kaldi_num_samples(n) samples has exactly n frames; one sample fewer has n - 1.
    for num_frames in (1, 16, 98, 1024):
        assert kaldi_num_frames(kaldi_num_samples(num_frames)) == num_frames
        assert kaldi_num_frames(kaldi_num_samples(num_frames) - 1) == num_frames - 1
    assert (patch_aligned(98, 16), patch_aligned(98, 16, round_up=True)) == (96, 112)
    assert (patch_aligned(96, 16), patch_aligned(96, 16, round_up=True)) == (96, 96)
    assert (patch_aligned(5, 16), patch_aligned(0, 16, round_up=True)) == (0, 16)


# --------------------------------------------------------------------------------------------------------- data sets


def test_load_audio_dataset_keeps_undecoded_audio(tmp_path):
    split = tmp_path / "train"
    split.mkdir()
    write_wav(split / "a.wav", tone(440.0, 16000, 0.5), 16000)
    (split / "broken.wav").write_bytes(b"garbage")
    (split / "metadata.csv").write_text("file_name,label\na.wav,x\nbroken.wav,y\n")
    dataset = load_audio_dataset(str(tmp_path), max_samples=1)
    assert dataset.column_names == ["audio"] and len(dataset) == 1
    assert dataset[0]["audio"]["path"].endswith("a.wav")
    assert len(load_audio_dataset(str(tmp_path))) == 2  # the broken file is only found when decoded
    with pytest.raises(ValueError, match="--audio_column_name 'sound' is not a column"):
        load_audio_dataset(str(tmp_path), audio_column_name="sound")


def test_short_clips_can_be_tiled_to_fill_the_crop():
    clip = np.arange(1, 5001, dtype=np.float32)
    assert random_crop(clip, 16000, np.random.default_rng(0)) is clip  # padded later, by the fbank
    tiled = random_crop(clip, 16000, np.random.default_rng(0), tile_short=True)
    assert tiled.shape == (16000,) and (tiled > 0).all()
    # The clip repeated end to end: every sample is followed by the next one of the clip, wrapping at its end.
    successors = np.roll(clip, -1)
    np.testing.assert_array_equal(tiled[1:], successors[(tiled[:-1] - 1).astype(int)])
    assert not np.array_equal(tiled, random_crop(clip, 16000, np.random.default_rng(1), tile_short=True))
    long = np.arange(20000, dtype=np.float32)
    np.testing.assert_array_equal(
        random_crop(long, 16000, np.random.default_rng(3), tile_short=True), random_crop(long, 16000,
                                                                                          np.random.default_rng(3))
    )


def test_labelled_subset_keeps_the_first_clips_of_each_label_and_the_other_splits(tmp_path, fsdd_dir):
    subset = labelled_subset(fsdd_dir, tmp_path / "few", per_class=3)
    train = load_audio_dataset(str(subset), label_column_name="label")
    labels = train["label"]
    assert len(train) == 30 and all(labels.count(label) == 3 for label in set(labels))
    test = load_audio_dataset(str(subset), split="test", label_column_name="label")
    assert len(test) == 500
    first = Path(train[0]["audio"]["path"]).resolve()
    assert first.parent == (fsdd_dir / "train").resolve()


def test_seeded_labelled_subset_draws_each_label_across_speakers_and_repeats_its_draw(tmp_path, fsdd_dir):
    first = load_audio_dataset(str(labelled_subset(fsdd_dir, tmp_path / "first", per_class=10)))
    drawn = labelled_subset(fsdd_dir, tmp_path / "drawn", per_class=10, seed=0)
    again = labelled_subset(fsdd_dir, tmp_path / "again", per_class=10, seed=0)
    other = labelled_subset(fsdd_dir, tmp_path / "other", per_class=10, seed=1)
    names = {folder: (folder / "train" / "metadata.csv").read_text() for folder in (drawn, again, other)}
    assert names[drawn] == names[again] and names[drawn] != names[other]
    dataset = load_audio_dataset(str(drawn), label_column_name="label")
    assert len(dataset) == 100 and all(dataset["label"].count(label) == 10 for label in set(dataset["label"]))
    speakers = {Path(clip["path"]).name.split("_")[1] for clip in dataset["audio"]}
    # FSDD's train split lists each digit speaker by speaker: its first ten clips of a digit are all george's.
    assert {Path(clip["path"]).name.split("_")[1] for clip in first["audio"]} == {"george"}
    assert len(speakers) == 5
