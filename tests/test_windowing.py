"""windowing_eat and audio_io_eat: windows cut from a stream equal the whole clip's frames, FFmpeg streaming, the
resampler."""

import numpy as np
import pytest
import torch

from modeling_eat import audio
from modeling_eat.audio_io_eat import array_blocks, ffmpeg_blocks, resample
from modeling_eat.feature_extraction_eat import kaldi_fbank, kaldi_num_frames, kaldi_num_samples
from modeling_eat.windowing_eat import count_windows, iter_windows, window_hop_frames

from eat_testing import SAMPLING_RATE, tone, write_wav


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.5, 0.5, 3 * SAMPLING_RATE + 1234).astype(np.float32)


@pytest.mark.parametrize("window_frames, hop_frames", [(64, 64), (64, 42), (100, 7), (1024, 1024)])
@pytest.mark.parametrize("block_samples", [997, 1 << 14, 10**7])
def test_windows_hold_the_frames_of_the_whole_clip(clip, window_frames, hop_frames, block_samples):
    whole = kaldi_fbank(torch.from_numpy(clip))
    windows = list(iter_windows(array_blocks(clip, block_samples), window_frames, hop_frames))
    assert len(windows) == count_windows(len(clip), window_frames, hop_frames)
    for number, (window, samples) in enumerate(windows):
        assert window.index == number and window.start_frame == number * hop_frames
        assert window.start_sample == 160 * window.start_frame
        assert len(samples) <= kaldi_num_samples(window_frames)
        frames = kaldi_fbank(torch.from_numpy(samples))
        assert frames.shape[0] == window.num_frames <= window_frames
        # Equal up to float32 rounding (the clip mean each removes differs; Kaldi's per-frame DC removal undoes it).
        torch.testing.assert_close(frames, whole[window.start_frame : window.start_frame + window.num_frames],
                                   atol=1e-5, rtol=1e-4)
        assert window.is_last == (number == len(windows) - 1)
    # Every frame is in a window, and only the last window reaches the clip's end.
    last = windows[-1][0]
    assert last.start_frame + last.num_frames == whole.shape[0]
    assert all(w.start_frame + window_frames < whole.shape[0] for w, _ in windows[:-1])


def test_a_clip_of_exactly_one_window_is_one_window():
    clip = np.zeros(kaldi_num_samples(64) + 159, dtype=np.float32)  # 64 frames; 159 samples make no 65th
    windows = list(iter_windows(array_blocks(clip, 1000), 64, 32))
    assert [(w.num_frames, w.is_last) for w, _ in windows] == [(64, True)]
    longer = np.zeros(kaldi_num_samples(65), dtype=np.float32)
    assert [w.is_last for w, _ in iter_windows(array_blocks(longer, 1000), 64, 32)] == [False, True]


def test_max_windows_tells_whether_audio_was_left(clip):
    (window, samples), = iter_windows(array_blocks(clip), 64, 64, max_windows=1)
    assert not window.is_last and len(samples) == kaldi_num_samples(64)
    short = clip[: kaldi_num_samples(40)]
    (window, samples), = iter_windows(array_blocks(short), 64, 64, max_windows=1)
    assert window.is_last and window.num_frames == 40


def test_windows_are_read_as_the_stream_goes(clip):
    consumed = []

    def blocks():
        for block in array_blocks(clip, 1000):
            consumed.append(len(block))
            yield block

    windows = iter_windows(blocks(), 64, 64)
    next(windows)
    # The first window (10,480 samples) and one frame of look-ahead: 11 blocks, not the clip's 50.
    assert sum(consumed) == 11000


def test_bad_window_settings_are_refused(clip):
    with pytest.raises(ValueError, match="hop_frames must lie in"):
        next(iter_windows(array_blocks(clip), 64, 65))
    with pytest.raises(ValueError, match="shorter than one 25 ms fbank frame"):
        next(iter_windows(array_blocks(clip[:399]), 64, 64))
    with pytest.raises(ValueError, match="empty"):
        next(iter_windows(iter([]), 64, 64))
    with pytest.raises(ValueError, match="leave no new audio"):
        window_hop_frames(64, 32, 32)


def test_ffmpeg_streams_a_file_in_blocks(tmp_path, clip):
    path = tmp_path / "clip.wav"
    write_wav(path, clip, SAMPLING_RATE)
    blocks = list(ffmpeg_blocks(str(path), SAMPLING_RATE, block_samples=5000))
    assert max(len(block) for block in blocks) == 5000 and len(blocks) == -(-len(clip) // 5000)
    np.testing.assert_array_equal(np.concatenate(blocks), clip)
    from_bytes = np.concatenate(list(ffmpeg_blocks(path.read_bytes(), SAMPLING_RATE)))
    np.testing.assert_array_equal(from_bytes, clip)


def test_ffmpeg_resamples_and_reports_failures(tmp_path):
    path = tmp_path / "tone.wav"
    write_wav(path, tone(440.0, 8000, 1.0), 8000)
    decoded = np.concatenate(list(ffmpeg_blocks(str(path), SAMPLING_RATE)))
    assert abs(len(decoded) - SAMPLING_RATE) <= 16
    spectrum = np.abs(np.fft.rfft(decoded))
    assert abs(np.argmax(spectrum) * SAMPLING_RATE / len(decoded) - 440.0) < 2.0
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all" * 100)
    with pytest.raises(ValueError, match="ffmpeg could not decode"):
        list(ffmpeg_blocks(str(broken), SAMPLING_RATE))
    with pytest.raises(FileNotFoundError, match="not a file"):
        list(ffmpeg_blocks(str(tmp_path / "missing.wav"), SAMPLING_RATE))


def test_stopping_early_stops_ffmpeg(tmp_path, clip):
    path = tmp_path / "clip.wav"
    write_wav(path, clip, SAMPLING_RATE)
    blocks = ffmpeg_blocks(str(path), SAMPLING_RATE, block_samples=1000)
    next(blocks)
    process = blocks.gi_frame.f_locals["process"]
    assert process.poll() is None  # FFmpeg still has most of the clip to send
    blocks.close()
    assert process.returncode is not None  # killed and reaped, not left running


def test_audio_decodes_with_the_core_resampler():
    # One resampler: the shared audio module uses the shipped one.
    assert audio.resample is resample
    assert kaldi_num_frames(len(resample(torch.zeros(8000), 8000, 16000))) == kaldi_num_frames(16000)
