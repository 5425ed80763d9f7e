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
"""Audio for the shipped pipeline, read as it goes: a file or the bytes of one decoded by FFmpeg as a stream of
sample blocks, an in-memory waveform as blocks, and the polyphase resampler (for arrays at another rate, and for
`modeling_eat.audio`'s decoding), so that no shipped file needs torchaudio.

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
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F


# One second of 16 kHz float32 audio per block (64 KB): small against a window, large enough that the Python loop
# over blocks costs nothing.
BLOCK_SAMPLES = 1 << 14


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


__all__ = ["BLOCK_SAMPLES", "array_blocks", "ffmpeg_blocks", "ffprobe_num_samples", "resample"]
