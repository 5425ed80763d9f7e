"""Utterance and frame-level embeddings of an EAT encoder, for sound event detection, retrieval or audio-LLM inputs.

Per clip:
- `utterance_embedding` `[D]`: the CLS token (the model's `pooler_output` when `layer` is the last);
- `frame_embeddings` `[T, D]`: the patch tokens averaged over the 8 frequency patches of each patch row. Row `t` is
  made of fbank frames `16t .. 16t + 15` (10 ms hop), so rows are 0.16 s apart;
- `frame_times` `[T]`: the **start** of each row in seconds, `0.16 * t` (row `t` covers the audio from `0.16 t` s to
  `0.16 t + 0.175` s: 16 hops plus the 25 ms window of its last frame).

Each clip is encoded at its own length (rounded up to whole patch rows, padding hidden from attention), not padded to
10 s. A clip longer than the model's positional table (`config.max_time_patches * 16` frames) is cut into windows of
`window_seconds` (rounded down to whole patch rows; by default 10 s, or the model's limit if shorter) that are encoded
separately: the frame rows are concatenated (time stamps stay exact because windows start on row boundaries) and the
utterance embedding is the average of the windows' CLS tokens weighted by their number of rows.
`always_window=True` windows every clip longer than `window_seconds`, matching the 10 s inputs EAT was pre-trained on.
"""

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..audio_io_eat import array_blocks
from ..feature_extraction_eat import (
    EATFeatureExtractor,
    frames_to_seconds,
    kaldi_num_frames,
    patch_aligned,
    seconds_to_patch_frames,
)
from ..windowing_eat import iter_windows


# The clip length EAT is pre-trained on.
DEFAULT_WINDOW_SECONDS = 10.0


@dataclass
class ClipFeatures:
    """Embeddings of one clip; `frame_times[t]` is the start in seconds of row `t` of `frame_embeddings`."""

    name: str
    utterance_embedding: np.ndarray
    frame_embeddings: np.ndarray
    frame_times: np.ndarray


def frame_hop_seconds(patch_size: int) -> float:
    return frames_to_seconds(patch_size)


def frame_start_times(num_rows: int, patch_size: int) -> np.ndarray:
    """Start time in seconds of each patch row: row `t` begins at fbank frame `patch_size * t`."""
    return frames_to_seconds(patch_size * np.arange(num_rows, dtype=np.float64)).astype(np.float32)


def window_num_frames(config, window_seconds: float | None = None) -> int:
    """Frames per window: `window_seconds` rounded down to whole patch rows; by default 10 s or the model's limit."""
    patch_size, max_frames = config.patch_size, config.max_input_frames
    if window_seconds is None:
        return min(max_frames, seconds_to_patch_frames(DEFAULT_WINDOW_SECONDS, patch_size))
    num_frames = seconds_to_patch_frames(window_seconds, patch_size)
    if num_frames < patch_size:
        raise ValueError(
            f"window_seconds={window_seconds} is shorter than one patch row ({frame_hop_seconds(patch_size):.2f} s): "
            "pass a longer window."
        )
    if num_frames > max_frames:
        raise ValueError(
            f"window_seconds={window_seconds} ({num_frames} frames) is longer than the model takes "
            f"(config.max_input_frames = {max_frames} frames, {frames_to_seconds(max_frames):.2f} s): "
            "pass a shorter window, or none for the default."
        )
    return num_frames


def resolve_layer(layer: int, num_hidden_layers: int) -> int:
    """Index into `hidden_states` (0 = embedding output, i = block i, -1 = last block) as a non-negative index."""
    num_states = num_hidden_layers + 1
    if not -num_states <= layer < num_states:
        raise ValueError(
            f"layer={layer} does not exist: the model has {num_hidden_layers} blocks, so pass 0 (embeddings) to "
            f"{num_hidden_layers} (last block), or a negative index down to {-num_states}."
        )
    return layer % num_states


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class _Segment:
    clip: int
    input_values: torch.Tensor  # [frames, mel]
    frame_mask: torch.Tensor  # [frames], 1 for real fbank frames
    num_rows: int  # patch rows with at least one real frame


class _PendingClip:
    def __init__(self, name: str, num_segments: int):
        self.name = name
        self.num_segments = num_segments
        self.utterances: list[torch.Tensor] = []
        self.weights: list[int] = []
        self.frames: list[torch.Tensor] = []

    def add(self, utterance: torch.Tensor, frames: torch.Tensor) -> None:
        self.utterances.append(utterance)
        self.weights.append(frames.shape[0])
        self.frames.append(frames)

    @property
    def done(self) -> bool:
        return len(self.weights) == self.num_segments

    def finish(self, patch_size: int) -> ClipFeatures:
        weights = torch.tensor(self.weights, dtype=torch.float32)
        utterance = (torch.stack(self.utterances) * weights[:, None]).sum(0) / weights.sum()
        frames = torch.cat(self.frames).numpy()
        return ClipFeatures(self.name, utterance.numpy(), frames, frame_start_times(frames.shape[0], patch_size))


def _clip_segments(
    clip: int,
    waveform,
    feature_extractor: EATFeatureExtractor,
    config,
    device: torch.device,
    window_frames: int,
    always_window: bool,
) -> list[_Segment]:
    """Normalized fbank of one clip, window by window (`iter_windows`, the pipeline's windowing) when it is longer
    than the model takes; each window at its own length rounded up to whole patch rows."""
    waveform = np.asarray(torch.as_tensor(waveform, dtype=torch.float32).cpu())
    patch_size, sampling_rate = config.patch_size, feature_extractor.sampling_rate
    padded_frames = patch_aligned(kaldi_num_frames(waveform.shape[-1], sampling_rate), patch_size, round_up=True)
    max_frames = config.max_input_frames
    segment_frames = window_frames if (always_window or padded_frames > max_frames) else padded_frames
    segments = []
    # Windows start on patch-row boundaries of the clip's frame grid, so their rows' time stamps stay exact.
    for window, samples in iter_windows(array_blocks(waveform), segment_frames, segment_frames, sampling_rate):
        features = feature_extractor(
            torch.from_numpy(samples).to(device),
            sampling_rate=sampling_rate,
            max_length=patch_aligned(window.num_frames, patch_size, round_up=True),
            return_attention_mask=True,
            return_tensors="pt",
        )
        segments.append(
            _Segment(
                clip,
                features["input_values"][0],
                features["attention_mask"][0],
                math.ceil(window.num_frames / patch_size),
            )
        )
    return segments


@torch.no_grad()
def _encode_segments(model, segments: Sequence[_Segment], layer: int, padding_value: float):
    """CLS `[B, D]` and patch rows `[B, rows, D]` (float32, CPU) of a batch of segments padded to the longest."""
    config = model.config
    longest = max(segment.input_values.shape[0] for segment in segments)
    device = segments[0].input_values.device
    input_values = torch.full((len(segments), longest, config.num_mel_bins), padding_value, device=device)
    frame_mask = torch.zeros(len(segments), longest, dtype=torch.long, device=device)
    for index, segment in enumerate(segments):
        input_values[index, : segment.input_values.shape[0]] = segment.input_values
        frame_mask[index, : segment.frame_mask.shape[0]] = segment.frame_mask
    num_rows = longest // config.patch_size
    every_row_is_real = all(segment.num_rows == num_rows for segment in segments)
    # Without padded rows the mask changes nothing, and leaving it out keeps SDPA on its fastest kernels.
    attention_mask = None if every_row_is_real else frame_mask
    outputs = model(
        input_values.to(model.dtype),
        attention_mask=attention_mask,
        output_hidden_states=layer != config.num_hidden_layers,
    )
    hidden = outputs.last_hidden_state if layer == config.num_hidden_layers else outputs.hidden_states[layer]
    hidden = hidden.float()
    rows = hidden[:, 1:].reshape(len(segments), num_rows, config.num_freq_patches, -1).mean(dim=2)
    return hidden[:, 0].cpu(), rows.cpu()


def iter_features(
    model,
    feature_extractor: EATFeatureExtractor,
    clips: Iterable[tuple[str, np.ndarray | torch.Tensor]],
    batch_size: int = 8,
    layer: int = -1,
    window_seconds: float | None = None,
    always_window: bool = False,
) -> Iterator[ClipFeatures]:
    """Streams `ClipFeatures` for `(name, waveform)` pairs, in their order; see the module docstring.

    Waveforms are mono float at the feature extractor's sampling rate. The model is an `EATModel` in eval mode; the
    fbank runs on the model's device. Up to `batch_size` windows (of one or more clips) are encoded per forward pass.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    config = model.config
    layer = resolve_layer(layer, config.num_hidden_layers)
    window_frames = window_num_frames(config, window_seconds)
    padding_value = float(feature_extractor.padding_value)
    if feature_extractor.do_normalize:
        padding_value = (padding_value - feature_extractor.mean) / (2 * feature_extractor.std)
    pending: dict[int, _PendingClip] = {}
    queue: list[_Segment] = []
    next_to_yield = 0

    def encode(segments):
        utterances, rows = _encode_segments(model, segments, layer, padding_value)
        for index, segment in enumerate(segments):
            pending[segment.clip].add(utterances[index], rows[index, : segment.num_rows])

    def finished():
        nonlocal next_to_yield
        while next_to_yield in pending and pending[next_to_yield].done:
            yield pending.pop(next_to_yield).finish(config.patch_size)
            next_to_yield += 1

    for clip_number, (name, waveform) in enumerate(clips):
        segments = _clip_segments(
            clip_number, waveform, feature_extractor, config, model.device, window_frames, always_window
        )
        pending[clip_number] = _PendingClip(name, len(segments))
        queue.extend(segments)
        while len(queue) >= batch_size:
            encode(queue[:batch_size])
            queue = queue[batch_size:]
            yield from finished()
    if queue:
        encode(queue)
    yield from finished()


def extract_features(
    model,
    feature_extractor: EATFeatureExtractor,
    waveforms: Sequence[np.ndarray | torch.Tensor],
    names: Sequence[str] | None = None,
    batch_size: int = 8,
    layer: int = -1,
    window_seconds: float | None = None,
    always_window: bool = False,
) -> list[ClipFeatures]:
    """`ClipFeatures` of in-memory waveforms (named `0, 1, ...` unless `names` are given); see `iter_features`."""
    if names is None:
        names = [str(index) for index in range(len(waveforms))]
    if len(names) != len(waveforms):
        raise ValueError(f"got {len(names)} names for {len(waveforms)} waveforms")
    clips = zip(names, waveforms)
    return list(iter_features(model, feature_extractor, clips, batch_size, layer, window_seconds, always_window))


def load_encoder(model_name_or_path: str, device: str | torch.device | None = "auto", dtype: str = "float32"):
    """The `EATModel` encoder of a saved EAT folder (an encoder, classifier or pre-training folder), in eval mode.
    A path that does not exist, or a folder of another model, is refused in one line (`check_model_source`)."""
    from transformers import AutoModel

    from ..hub import check_model_source

    check_model_source(model_name_or_path)
    model = AutoModel.from_pretrained(model_name_or_path, dtype=getattr(torch, dtype))
    return model.to(resolve_device(device)).eval()


__all__ = [
    "ClipFeatures",
    "extract_features",
    "frame_hop_seconds",
    "frame_start_times",
    "iter_features",
    "load_encoder",
    "resolve_device",
    "resolve_layer",
    "window_num_frames",
]
