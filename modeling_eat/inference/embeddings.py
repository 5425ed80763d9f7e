"""Scene and timestamp embeddings of a batch of sounds: the one implementation behind the evaluation harnesses'
adapters, `modeling_eat.hear` (HEAR 2021) and `modeling_eat.xares` (X-ARES).

`EATEmbedder` takes `[n_sounds, n_samples]` float audio at 16 kHz of any length and returns
- scene embeddings `[n_sounds, D']`: one per sound, pooled (`scene_pooling`) from hidden state `scene_layer`;
- timestamp embeddings `[n_sounds, n_timestamps, D]` and their timestamps `[n_sounds, n_timestamps]` in milliseconds:
  the patch rows of hidden state `timestamp_layer`, each averaged over its frequency patches, every
  `timestamp_hop_ms`.

Everything goes through `iter_features` (so through the package's one windowing, `windowing_eat.iter_windows`): each
sound is cut into windows of `window_seconds`, by default the feature extractor's `max_length` (1024 frames, 10.24 s:
the input EAT is pre-trained on, and the pipeline's window), encoded `batch_size` windows per forward pass on the
encoder's device; only a window's activations are held at a time, whatever the length.

**Timestamps.** Patch row `t` is made of fbank frames `16t .. 16t + 15` and so covers the audio from `160 t` ms to
`160 t + 175` ms (16 hops of 10 ms plus the 25 ms window of its last frame); its timestamp is the centre of that span,
`160 t + 87.5` ms. A row whose centre lies past the end of the sound is dropped (less than half of it is audio), so
no timestamp lies beyond the end; a sound too short for any row centre keeps its one row, stamped at its midpoint.

**Hops finer than a patch row** (`timestamp_hop_ms` = 160 / k, k in 2, 4, 8, 16) are real encodings, not an
interpolation: the sound is encoded k times, pass `p` with its first `p * 16 / k` fbank frames left out, so that
the rows of pass `p` start `p * 160 / k` ms later than those of pass 0; the passes' rows are interleaved. It costs k
times the encoding of the native hop.

**Audio outside [-1, 1].** Float audio is taken to be in [-1, 1] and in that range is encoded exactly as
`python -m modeling_eat.extract` encodes it. A sound whose peak exceeds 1 (X-ARES's own check feeds
`torch.randn`, clipped or unnormalised audio) is divided by its peak, only here and not in the feature extractor:
a float waveform cannot hold more than full scale, and the extractor would otherwise refuse peaks above 16 as integer
PCM stored as float. The scaling is continuous (peak 1 is left as it is) and changes nothing but the loudness.
"""

import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from ..audio import load_feature_extractor, seconds_to_samples
from ..feature_extraction_eat import FRAME_SHIFT_MS, EATFeatureExtractor, frames_to_seconds, kaldi_num_samples
from .features import iter_features, load_encoder, resolve_layer, window_num_frames
from .probe import POOLINGS, pooled_features, pooled_size


# The official pre-trained EAT-Base (the hub's remote-code port, loaded natively by `from_pretrained`).
DEFAULT_MODEL = "worstchan/EAT-base_epoch30_pretrain"
# Read when no model is given: X-ARES constructs its encoder without arguments.
MODEL_VARIABLE = "EAT_MODEL_NAME_OR_PATH"

# The settings chosen by the measurement of BENCHMARKS.md, section 9 ("Evaluation harnesses").
DEFAULT_SCENE_LAYER = -1
DEFAULT_SCENE_POOLING = "cls"
DEFAULT_TIMESTAMP_LAYER = -1
DEFAULT_TIMESTAMP_HOP_MS = 40.0


def resolve_model_name_or_path(model_name_or_path: str | os.PathLike | None = None) -> str:
    """The model to load: the one given; else the environment variable `EAT_MODEL_NAME_OR_PATH`; else the official
    pre-trained EAT-Base. An empty string counts as not given (HEAR's `load_model("")`)."""
    if model_name_or_path:
        return str(model_name_or_path)
    return os.environ.get(MODEL_VARIABLE) or DEFAULT_MODEL


def hop_passes(hop_ms: float, patch_size: int) -> int:
    """Encoding passes a timestamp hop of `hop_ms` takes: the patch row (`patch_size` fbank frames) over the hop,
    which must leave a whole number of fbank frames between passes."""
    row_ms = patch_size * FRAME_SHIFT_MS
    allowed = {row_ms / passes: passes for passes in range(1, patch_size + 1) if patch_size % passes == 0}
    for hop, passes in allowed.items():
        if math.isclose(hop, hop_ms):
            return passes
    raise ValueError(
        f"timestamp_hop_ms={hop_ms:g} is not a patch row ({row_ms:g} ms) divided into whole fbank frames: pass one "
        f"of {', '.join(f'{hop:g}' for hop in allowed)}."
    )


def limit_to_full_scale(audio: torch.Tensor) -> torch.Tensor:
    """Each sound of `[n_sounds, n_samples]` whose peak exceeds 1 divided by its peak; the others unchanged."""
    if not torch.isfinite(audio).all():
        row = int((~torch.isfinite(audio)).any(dim=-1).nonzero()[0])
        raise ValueError(f"sound {row} holds NaN or infinite samples: clean the audio before embedding it.")
    peaks = audio.abs().amax(dim=-1, keepdim=True) if audio.shape[-1] else audio.new_ones(audio.shape[0], 1)
    return audio / peaks.clamp(min=1.0)


def _as_batch(audio) -> torch.Tensor:
    audio = torch.as_tensor(audio)
    if audio.ndim != 2:
        raise ValueError(
            f"audio must be [n_sounds, n_samples], got shape {tuple(audio.shape)}: pass one sound as `audio[None]`."
        )
    if not audio.is_floating_point():
        raise ValueError(f"audio must be float in [-1, 1], got {audio.dtype}: convert 16-bit PCM with `/ 32768`.")
    return limit_to_full_scale(audio.detach().float().cpu())


class EATEmbedder(torch.nn.Module):
    """An EAT encoder with its feature extractor and the settings of its embeddings (see the module docstring).

    The attributes `sample_rate`, `scene_embedding_size` and `timestamp_embedding_size` are those HEAR's API asks
    of a model. The encoder is a submodule: `.to(device)` moves it, and the fbank follows it.
    """

    def __init__(
        self,
        encoder,
        feature_extractor: EATFeatureExtractor,
        scene_layer: int = DEFAULT_SCENE_LAYER,
        scene_pooling: str = DEFAULT_SCENE_POOLING,
        timestamp_layer: int = DEFAULT_TIMESTAMP_LAYER,
        timestamp_hop_ms: float = DEFAULT_TIMESTAMP_HOP_MS,
        batch_size: int = 8,
        window_seconds: float | None = None,
    ):
        super().__init__()
        config = encoder.config
        if scene_pooling not in POOLINGS:
            raise ValueError(f"scene_pooling must be one of {', '.join(POOLINGS)}, got {scene_pooling!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.encoder = encoder.eval()
        self.feature_extractor = feature_extractor
        self.scene_layer = resolve_layer(scene_layer, config.num_hidden_layers)
        self.timestamp_layer = resolve_layer(timestamp_layer, config.num_hidden_layers)
        self.scene_pooling = scene_pooling
        if window_seconds is None:
            window_seconds = float(frames_to_seconds(min(int(feature_extractor.max_length), config.max_input_frames)))
        window_num_frames(config, window_seconds)  # refuses a window the model cannot take, now rather than later
        self.num_passes = hop_passes(timestamp_hop_ms, config.patch_size)
        self.timestamp_hop_ms = float(timestamp_hop_ms)
        self.batch_size = batch_size
        self.window_seconds = window_seconds
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.scene_embedding_size = pooled_size(scene_pooling, config.hidden_size)
        self.timestamp_embedding_size = int(config.hidden_size)

    def extra_repr(self) -> str:
        return (
            f"scene: layer {self.scene_layer}, {self.scene_pooling}; timestamps: layer {self.timestamp_layer}, every "
            f"{self.timestamp_hop_ms:g} ms; windows of {self.window_seconds:g} s, {self.batch_size} per pass"
        )

    def _features(self, waveforms: Sequence[np.ndarray], layer: int):
        clips = ((str(index), waveform) for index, waveform in enumerate(waveforms))
        return iter_features(
            self.encoder, self.feature_extractor, clips, self.batch_size, layer, self.window_seconds,
            always_window=True,
        )

    def scene_embeddings(self, audio) -> torch.Tensor:
        """`[n_sounds, scene_embedding_size]` float32, on the device of `audio`."""
        batch = _as_batch(audio)
        embeddings = torch.empty(len(batch), self.scene_embedding_size)
        if len(batch):
            clips = list(self._features(batch.numpy(), self.scene_layer))
            embeddings = torch.from_numpy(pooled_features(clips, self.scene_pooling))
        return embeddings.to(torch.as_tensor(audio).device)

    def _hop_samples(self) -> int:
        """Samples between timestamps: the fbank frames between passes, as samples."""
        hop_frames = self.encoder.config.patch_size // self.num_passes
        return seconds_to_samples(frames_to_seconds(hop_frames), self.sample_rate)

    def timestamps_ms(self, num_samples: int) -> np.ndarray:
        """The timestamps (ms, float64) of a sound of `num_samples` samples: see the module docstring."""
        first_centre = kaldi_num_samples(self.encoder.config.patch_size, self.sample_rate) / 2
        if num_samples < first_centre:
            return np.array([500.0 * num_samples / self.sample_rate])
        count = int((num_samples - first_centre) // self._hop_samples()) + 1
        return (first_centre + self._hop_samples() * np.arange(count)) * 1000.0 / self.sample_rate

    def timestamp_embeddings(self, audio) -> tuple[torch.Tensor, torch.Tensor]:
        """(`[n_sounds, n_timestamps, timestamp_embedding_size]` float32, `[n_sounds, n_timestamps]` float32 ms),
        on the device of `audio`."""
        batch = _as_batch(audio)
        num_sounds, num_samples = batch.shape
        timestamps = self.timestamps_ms(num_samples)
        # A sound shorter than the passes' shifts needs only the passes that reach one of its timestamps.
        num_passes = min(self.num_passes, len(timestamps))
        waveforms, hop_samples = batch.numpy(), self._hop_samples()
        # One stream of every sound's every pass, so that windows of different passes share forward passes.
        shifted = (waveforms[sound, hop * hop_samples :] for sound in range(num_sounds) for hop in range(num_passes))
        embeddings = torch.empty(num_sounds, len(timestamps), self.timestamp_embedding_size)
        for clip_index, clip in enumerate(self._features(shifted, self.timestamp_layer)):
            sound, pass_index = divmod(clip_index, num_passes)
            # Pass `p` holds timestamps p, p + k, p + 2k, ... of the k passes; its rows past the last one are dropped.
            needed = math.ceil((len(timestamps) - pass_index) / self.num_passes)
            embeddings[sound, pass_index :: self.num_passes] = torch.from_numpy(clip.frame_embeddings[:needed])
        device = torch.as_tensor(audio).device
        timestamps = torch.from_numpy(timestamps).float().expand(num_sounds, -1).contiguous()
        return embeddings.to(device), timestamps.to(device)


def load_embedder(
    model_name_or_path: str | os.PathLike | None = None,
    device: str | torch.device | None = "auto",
    dtype: str = "float32",
    feature_extractor_name: str | None = None,
    **settings,
) -> EATEmbedder:
    """An `EATEmbedder` of any EAT folder or Hub id (also the official hub-port checkpoints), by default the one
    `resolve_model_name_or_path` picks, on `device` (GPU when present). The feature extractor is the folder's own,
    else `feature_extractor_name`, else the AudioSet preset EAT pre-trains with. `settings` are `EATEmbedder`'s."""
    model_name_or_path = resolve_model_name_or_path(model_name_or_path)
    encoder = load_encoder(model_name_or_path, device, dtype)
    feature_extractor = load_feature_extractor(feature_extractor_name, model_name_or_path)
    return EATEmbedder(encoder, feature_extractor, **settings)


__all__ = [
    "DEFAULT_MODEL",
    "MODEL_VARIABLE",
    "EATEmbedder",
    "hop_passes",
    "limit_to_full_scale",
    "load_embedder",
    "resolve_model_name_or_path",
]
