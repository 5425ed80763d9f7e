# Copyright 2026 The modeling_eat authors.
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in compliance with
# the License. You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software distributed under the License is distributed on
# an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the License for the
# specific language governing permissions and limitations under the License.
"""Long audio in bounded memory: audio as a stream of sample blocks, resampling, and the windows cut from a stream.

`iter_windows` is the one windowing of the package: `pipeline("audio-classification", chunk_length_s=...)` classifies
its windows and `python -m modeling_eat.extract` embeds them. A window of `W` fbank frames every `H` frames starts on
the clip's own Kaldi frame grid (sample `H * k * frame_shift`), and is read with the samples its last frame needs, so
its fbank frames are those of the whole clip. Only one window (plus one block) is held at a time, whatever the length.

Shipped with saved folders (the pipeline reads files through `ffmpeg_blocks`), so it imports only numpy, torch and
the standard library.
"""

import functools
import math
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .feature_extraction_eat import FRAME_LENGTH_MS, FRAME_SHIFT_MS, _frame_sizes, kaldi_num_frames, kaldi_num_samples


# One second of 16 kHz float32 audio per block (64 KB): small against a window, large enough that the Python loop
# over blocks costs nothing.
BLOCK_SAMPLES = 1 << 14
FRAMES_PER_SECOND = 1000.0 / FRAME_SHIFT_MS


def seconds_to_frames(seconds: float) -> int:
    """Fbank frames that a span of `seconds` holds, one per 10 ms hop (a window cut out of a longer fbank)."""
    return int(round(seconds * FRAMES_PER_SECOND))


@functools.lru_cache(maxsize=16)
def _resampling_kernels(orig: int, new: int, lowpass_filter_width: int, rolloff: float) -> tuple[torch.Tensor, int]:
    # Cut-off as a fraction of the input rate; the filters are written in input-sample units.
    cutoff = rolloff * min(orig, new) / orig
    half_width = math.ceil(lowpass_filter_width / cutoff)
    offsets = torch.arange(-half_width, half_width + orig, dtype=torch.float64)
    phases = torch.arange(new, dtype=torch.float64)[:, None] * orig / new
    distance = offsets[None, :] - phases
    window = torch.where(
        distance.abs() <= half_width, torch.cos(distance * math.pi / (2 * half_width)) ** 2, torch.zeros(())
    )
    return cutoff * torch.sinc(cutoff * distance) * window, half_width


def resample(
    waveform: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """Band-limited resampling of `(..., num_samples)` with a Hann-windowed sinc, in polyphase form.

    The rates are reduced by their gcd to `orig` in and `new` out; output sample `k * new + p` sits `p * orig / new`
    input samples after input sample `k * orig`, so each of the `new` phases is one filter applied every `orig` input
    samples. The low-pass cut-off is `rolloff` times the lower Nyquist frequency; `lowpass_filter_width` zero
    crossings of the sinc are kept on each side.
    """
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sampling rates must be positive, got {orig_freq} and {new_freq}")
    if orig_freq == new_freq:
        return waveform
    common = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // common, int(new_freq) // common
    kernels, half_width = _resampling_kernels(orig, new, lowpass_filter_width, float(rolloff))
    kernels = kernels.to(waveform.dtype)

    shape = waveform.shape
    signal = F.pad(waveform.reshape(-1, shape[-1]), (half_width, half_width + orig))
    # A matmul over strided windows: conv1d with a stride in the hundreds is several times slower on CPU.
    output = (signal.unfold(-1, kernels.shape[1], orig) @ kernels.T).flatten(1)
    num_output = math.ceil(shape[-1] * new / orig)
    return output[:, :num_output].reshape(*shape[:-1], num_output)


@dataclass(frozen=True)
class AudioWindow:
    """Where window `index` lies in its clip: fbank frames `start_frame ..`, `num_frames` of them real (at most the
    window length; fewer in a clip's last window), read from sample `start_sample`. `is_last` when no frame of the
    clip lies past it."""

    index: int
    start_frame: int
    num_frames: int
    start_sample: int
    is_last: bool


def window_hop_frames(window_frames: int, left_frames: int, right_frames: int) -> int:
    """Frames between window starts when each window shares `left_frames` / `right_frames` with its neighbours."""
    if window_frames < 1 or left_frames < 0 or right_frames < 0:
        raise ValueError(f"need a positive window and non-negative strides, got {window_frames}, {left_frames}, "
                         f"{right_frames} frames")
    hop = window_frames - left_frames - right_frames
    if hop < 1:
        raise ValueError(
            f"the strides ({left_frames} + {right_frames} frames) leave no new audio in a window of {window_frames} "
            "frames: pass a shorter stride_length_s or a longer chunk_length_s."
        )
    return hop


def count_windows(num_samples: int, window_frames: int, hop_frames: int, sampling_rate: int = 16000) -> int:
    """How many windows `iter_windows` cuts from `num_samples` samples: until one reaches the clip's last frame."""
    num_frames = kaldi_num_frames(num_samples, sampling_rate)
    return 1 + max(0, math.ceil((num_frames - window_frames) / hop_frames))


def iter_windows(
    blocks: Iterable[np.ndarray],
    window_frames: int,
    hop_frames: int,
    sampling_rate: int = 16000,
    max_windows: int | None = None,
) -> Iterator[tuple[AudioWindow, np.ndarray]]:
    """Cuts a stream of 1-D sample blocks into windows of `window_frames` fbank frames, one every `hop_frames`.

    Yields `(AudioWindow, samples)`, `samples` holding what the window's frames read (`kaldi_num_samples(
    window_frames)` samples, fewer in the last window). Windows follow until one reaches the clip's last frame, so
    every frame is in at least one window. With `max_windows`, stops after that many; the last one yielded then
    tells by `is_last` whether audio was left unread. Holds one window and one block at a time.
    """
    if not 1 <= hop_frames <= window_frames:
        raise ValueError(f"hop_frames must lie in [1, window_frames = {window_frames}], got {hop_frames}")
    _, frame_shift, _ = _frame_sizes(sampling_rate, FRAME_LENGTH_MS, FRAME_SHIFT_MS)
    window_samples = kaldi_num_samples(window_frames, sampling_rate)
    blocks = iter(blocks)
    buffer, buffer_start, exhausted = None, 0, False
    index = 0
    while True:
        start = index * hop_frames * frame_shift
        # One frame past the window decides whether the clip goes on after it.
        wanted = start + window_samples + frame_shift
        pieces = [] if buffer is None else [buffer]
        available = buffer_start + (0 if buffer is None else len(buffer))
        while not exhausted and available < wanted:
            block = next(blocks, None)
            if block is None:
                exhausted = True
            elif len(block):
                pieces.append(np.asarray(block))
                available += len(block)
        if not pieces:
            raise ValueError("the audio is empty: there are no samples to classify")
        buffer = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        samples = buffer[start - buffer_start : start - buffer_start + window_samples]
        num_frames = kaldi_num_frames(len(samples), sampling_rate)
        if index == 0 and num_frames == 0:
            raise ValueError(
                f"the audio holds {len(samples)} samples ({1000 * len(samples) / sampling_rate:.1f} ms), shorter "
                f"than one 25 ms fbank frame ({kaldi_num_samples(1, sampling_rate)} samples): pad it or drop it."
            )
        is_last = exhausted and index * hop_frames + window_frames >= kaldi_num_frames(available, sampling_rate)
        # A copy: a view would keep the whole buffer alive for as long as the caller keeps the window.
        yield AudioWindow(index, index * hop_frames, num_frames, start, is_last), samples.copy()
        index += 1
        if is_last or (max_windows is not None and index >= max_windows):
            return
        next_start = index * hop_frames * frame_shift
        buffer, buffer_start = buffer[next_start - buffer_start :], next_start


def array_blocks(waveform: np.ndarray, block_samples: int = BLOCK_SAMPLES) -> Iterator[np.ndarray]:
    """An in-memory 1-D waveform as blocks (views, no copy)."""
    for start in range(0, len(waveform), block_samples):
        yield waveform[start : start + block_samples]


def ffmpeg_blocks(source: str | bytes, sampling_rate: int, block_samples: int = BLOCK_SAMPLES) -> Iterator[np.ndarray]:
    """Decodes a file (path or URL) or the bytes of one with FFmpeg to mono float32 at `sampling_rate`, as it goes.

    FFmpeg down-mixes and resamples the whole stream itself, so blocks join without seams; only one block is held in
    this process. Closing the generator early stops FFmpeg.
    """
    name = source if isinstance(source, str) else "<audio bytes>"
    if isinstance(source, str) and "://" not in source and not os.path.isfile(source):
        raise FileNotFoundError(f"{source} is not a file: check the path")
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", source if isinstance(source, str) else "pipe:0",
               "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "pipe:1"]
    errors = tempfile.TemporaryFile()
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if isinstance(source, bytes) else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    except FileNotFoundError:
        errors.close()
        raise ValueError(
            "ffmpeg was not found but is needed to read audio files: install it (e.g. `apt-get install ffmpeg`), or "
            "pass the decoded waveform as a numpy array or a {'array': ..., 'sampling_rate': ...} dict."
        ) from None
    if isinstance(source, bytes):
        # A thread feeds stdin, so that FFmpeg's output is read while it decodes instead of after.
        threading.Thread(target=_feed, args=(process.stdin, source), daemon=True).start()
    num_samples = 0
    try:
        while True:
            data = process.stdout.read(4 * block_samples)
            if not data:
                break
            # f32le output comes in whole samples; a short read happens at the end of the stream only.
            block = np.frombuffer(data[: len(data) // 4 * 4], dtype=np.float32)
            num_samples += len(block)
            yield block
        if process.wait() != 0 or num_samples == 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip().splitlines()[-3:]
            raise ValueError(f"ffmpeg could not decode {name}: {' / '.join(message) or 'no audio stream'}")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        errors.close()


def _feed(stream, data: bytes) -> None:
    try:
        stream.write(data)
    except (BrokenPipeError, ValueError):
        pass  # FFmpeg stopped reading: it failed (reported by the reader) or was stopped early on purpose
    finally:
        try:
            stream.close()
        except BrokenPipeError:
            pass


def ffprobe_num_samples(path: str, sampling_rate: int) -> int | None:
    """The length of a file at `sampling_rate` from its container's duration, or None when FFprobe cannot tell."""
    if shutil.which("ffprobe") is None or not os.path.isfile(path):
        return None
    try:
        completed = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
            capture_output=True, text=True, timeout=60,
        )
        return int(float(completed.stdout.strip()) * sampling_rate)
    except (ValueError, subprocess.SubprocessError):
        return None


__all__ = [
    "FRAMES_PER_SECOND",
    "AudioWindow",
    "array_blocks",
    "count_windows",
    "ffmpeg_blocks",
    "ffprobe_num_samples",
    "iter_windows",
    "resample",
    "seconds_to_frames",
    "window_hop_frames",
]
