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
"""The one windowing of long audio: `pipeline("audio-classification", chunk_length_s=...)` classifies its windows
and `python -m modeling_eat.extract` embeds them. A window of `W` fbank frames every `H` frames starts on the clip's
own Kaldi frame grid (sample `H * k * frame_shift`), and is read with the samples its last frame needs, so its fbank
frames are those of the whole clip. Only one window (plus one block of the stream, `audio_io_eat`) is held at a time,
whatever the length.

Shipped with saved folders, so it imports only numpy and the standard library (and this package's shipped files).
"""

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .feature_extraction_eat import FRAME_LENGTH_MS, FRAME_SHIFT_MS, _frame_sizes, kaldi_num_frames, kaldi_num_samples


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


__all__ = ["AudioWindow", "count_windows", "iter_windows", "window_hop_frames"]
