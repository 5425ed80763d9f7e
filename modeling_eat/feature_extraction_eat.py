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
"""Feature extractor for EAT: mono 16 kHz waveform -> normalized Kaldi log-mel fbank "image".

The pipeline is EAT's (`data/raw_audio_dataset.py` in the official repository):

1. remove the waveform mean over the whole clip;
2. `torchaudio.compliance.kaldi.fbank(..., window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10,
   use_energy=False)` with every other option at its Kaldi default;
3. zero-pad at the end or crop to `max_length` frames;
4. `(fbank - mean) / (2 * std)`.

torchaudio is not a dependency: `kaldi_fbank` below re-derives step 2 from Kaldi's definition and runs batched in
PyTorch, on the device of its input.
"""

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging


logger = logging.get_logger(__name__)

# Kaldi's frame geometry as EAT uses it (`data/raw_audio_dataset.py` of the EAT repository): 25 ms windows every 10 ms,
# i.e. 100 frames per second.
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
FRAMES_PER_SECOND = 1000.0 / FRAME_SHIFT_MS

# Normalization statistics and clip lengths of the official fine-tuning recipes (`scripts/finetuning_*.sh`).
NORMALIZATION_PRESETS = {
    "audioset": {"mean": -4.268, "std": 4.569, "max_length": 1024},
    "esc50": {"mean": -6.627, "std": 5.359, "max_length": 512},
    "spc2": {"mean": -6.846, "std": 5.565, "max_length": 128},
}

# Kaldi floors the mel energies at float32 epsilon before the log, whatever the compute dtype.
_LOG_FLOOR = torch.finfo(torch.float32).eps
# int16 PCM full scale: EAT feeds Kaldi float waveforms in [-1, 1], as decoders such as soundfile return them.
_INT16_SCALE = 1.0 / 32768.0
# Float samples beyond this are not audio in [-1, 1] (24 dB over full scale) but integer PCM stored as float: even
# int16 at -60 dBFS peaks at 32.
_MAX_FLOAT_PEAK = 16.0
# Frames per chunk in kaldi_fbank: on CPU a chunk's ~2 MB of float32 intermediates stay in cache; on GPU chunks only
# bound the memory of a long batch (~0.5 GB per intermediate).
_CPU_CHUNK_FRAMES = 1024
_GPU_CHUNK_FRAMES = 1 << 18


def _frame_sizes(sampling_rate: int, frame_length_ms: float, frame_shift_ms: float) -> tuple[int, int, int]:
    # Kaldi truncates milliseconds to whole samples and zero-pads each frame to the next power of two.
    frame_length = int(sampling_rate * frame_length_ms * 0.001)
    frame_shift = int(sampling_rate * frame_shift_ms * 0.001)
    fft_length = 1 << (frame_length - 1).bit_length()
    return frame_length, frame_shift, fft_length


def kaldi_num_frames(
    num_samples: int,
    sampling_rate: int = 16000,
    frame_length_ms: float = FRAME_LENGTH_MS,
    frame_shift_ms: float = FRAME_SHIFT_MS,
) -> int:
    """Number of fbank frames Kaldi (`snip_edges=True`) makes from `num_samples` samples; 0 below one frame."""
    frame_length, frame_shift, _ = _frame_sizes(sampling_rate, frame_length_ms, frame_shift_ms)
    if num_samples < frame_length:
        return 0
    return 1 + (num_samples - frame_length) // frame_shift


def kaldi_num_samples(num_frames: int, sampling_rate: int = 16000) -> int:
    """The fewest samples Kaldi makes `num_frames` frames of, 25 ms every 10 ms (the inverse of `kaldi_num_frames`)."""
    frame_length, frame_shift, _ = _frame_sizes(sampling_rate, FRAME_LENGTH_MS, FRAME_SHIFT_MS)
    return (num_frames - 1) * frame_shift + frame_length if num_frames > 0 else 0


def seconds_to_frames(seconds: float) -> int:
    """Fbank frames that a span of `seconds` holds, one per 10 ms hop (a window cut out of a longer fbank)."""
    return int(round(seconds * FRAMES_PER_SECOND))


def frames_to_seconds(num_frames):
    """Start time in seconds of frame `num_frames` (an int or an array)."""
    return num_frames / FRAMES_PER_SECOND


def patch_aligned(num_frames: int, patch_size: int, round_up: bool = False) -> int:
    """`num_frames` rounded to whole patch rows: down (a crop never reaches past the audio), or up to at least one
    row (padding, so that every real frame is encoded)."""
    if round_up:
        return max(1, math.ceil(num_frames / patch_size)) * patch_size
    return num_frames // patch_size * patch_size


def seconds_to_patch_frames(seconds: float, patch_size: int) -> int:
    """The frames of a window of `seconds` cut out of a longer fbank, in whole patch rows (10 s: 1000 -> 992)."""
    return patch_aligned(seconds_to_frames(seconds), patch_size)


@functools.lru_cache(maxsize=32)
def _fbank_constants(
    device: torch.device,
    dtype: torch.dtype,
    sampling_rate: int,
    num_mel_bins: int,
    frame_length: int,
    fft_length: int,
    low_freq: float,
    high_freq: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window `[frame_length]` and mel matrix `[fft_length // 2, num_mel_bins]`, cached per device and dtype.

    The cache lives at module level so that no tensor ends up in the extractor's serialized attributes.
    """
    # Both are computed in the compute dtype (float32 = Kaldi's BaseFloat), not in float64: a pure tone near the foot
    # of a mel triangle gets a small weight whose float32 rounding moves its log-mel by several 1e-4, so a matrix built
    # in float64 lands further from torchaudio's (README, "Numerical faithfulness").
    # Kaldi's "hanning" is the symmetric Hann window (denominator N - 1), unlike torch's periodic default.
    window = torch.hann_window(frame_length, periodic=False, dtype=dtype)

    nyquist = 0.5 * sampling_rate
    if high_freq <= 0.0:
        high_freq = nyquist + high_freq
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist}), got {low_freq} and {high_freq}")

    # Triangles are equally spaced and linear in mel (1127 ln(1 + f / 700)), not in Hz. Kaldi evaluates them on the
    # fft_length // 2 bins below Nyquist only; the Nyquist bin gets weight 0 (the zero column Kaldi pads on), so
    # kaldi_fbank drops that bin instead.
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    mel_delta = (mel_high - mel_low) / (num_mel_bins + 1)
    filter_index = torch.arange(num_mel_bins, dtype=dtype)[:, None]
    left = mel_low + filter_index * mel_delta
    center = mel_low + (filter_index + 1.0) * mel_delta
    right = mel_low + (filter_index + 2.0) * mel_delta
    bin_frequency = (sampling_rate / fft_length) * torch.arange(fft_length // 2, dtype=dtype)
    bin_mel = 1127.0 * (1.0 + bin_frequency / 700.0).log()
    rising = (bin_mel - left) / (center - left)
    falling = (right - bin_mel) / (right - center)
    mel_matrix = torch.clamp(torch.minimum(rising, falling), min=0.0).T.contiguous()
    return window.to(device), mel_matrix.to(device)


def _log_mel_of_frames(
    frames: torch.Tensor,
    clip_mean: torch.Tensor | None,
    window: torch.Tensor,
    mel_matrix: torch.Tensor,
    preemphasis: float,
    fft_length: int,
) -> torch.Tensor:
    """Log-mel energies of raw frames `(..., frame_length)` -> `(..., num_mel_bins)`.

    The float32 operations run in Kaldi's order (DC removal, pre-emphasis, window, zero-pad, FFT), so that rounding
    matches torchaudio's; only the memory traffic differs (one padded buffer written in place).
    """
    frame_length = frames.shape[-1]
    if clip_mean is not None:
        frames = frames - clip_mean
    frames = frames - frames.mean(-1, keepdim=True)
    padded = frames.new_zeros(frames.shape[:-1] + (fft_length,))
    # Kaldi's pre-emphasis treats the sample before each frame's first as that first sample itself.
    emphasized = padded[..., 1:frame_length]
    torch.mul(frames[..., :-1], preemphasis, out=emphasized)
    torch.sub(frames[..., 1:], emphasized, out=emphasized)
    padded[..., 0] = frames[..., 0] - preemphasis * frames[..., 0]
    padded[..., :frame_length].mul_(window)
    # |X|^2 as re^2 + im^2: `abs()` would take a square root only to square it again, at more than the FFT's cost.
    spectrum = torch.view_as_real(torch.fft.rfft(padded)[..., : fft_length // 2])
    real, imaginary = spectrum[..., 0], spectrum[..., 1]
    power = torch.addcmul(real.square(), imaginary, imaginary)
    mel_energies = power @ mel_matrix
    return mel_energies.clamp_(min=_LOG_FLOOR).log_()


def kaldi_fbank(
    waveforms: torch.Tensor,
    sampling_rate: int = 16000,
    num_mel_bins: int = 128,
    lengths: Sequence[int] | torch.Tensor | None = None,
    max_frames: int | None = None,
    remove_clip_mean: bool = True,
    frame_length_ms: float = FRAME_LENGTH_MS,
    frame_shift_ms: float = FRAME_SHIFT_MS,
    preemphasis: float = 0.97,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> torch.Tensor:
    """Kaldi log-mel filter bank, as EAT computes it, for a batch of clips of different lengths.

    Equals `torchaudio.compliance.kaldi.fbank(waveform - waveform.mean(), sample_frequency=sampling_rate,
    num_mel_bins=num_mel_bins, window_type="hanning", dither=0.0, frame_shift=10, use_energy=False)` (snip_edges,
    per-frame DC removal, pre-emphasis 0.97, symmetric Hann window, power spectrum, log floored at float32 eps),
    computed without torchaudio on the device of `waveforms`.

    Args:
        waveforms (`torch.Tensor` of shape `(num_samples,)` or `(batch_size, num_samples)`):
            Float waveforms in [-1, 1]. Items shorter than `num_samples` are right-padded; give their `lengths`.
        sampling_rate (`int`): Sampling rate of `waveforms` in Hz.
        num_mel_bins (`int`): Number of mel filters.
        lengths (sequence of `int` or `torch.Tensor`, *optional*):
            Valid samples per batch item. Padding samples never reach a returned frame. Defaults to `num_samples`.
        max_frames (`int`, *optional*): Compute only the first `max_frames` frames (cropping, as EAT does).
        remove_clip_mean (`bool`): Subtract each clip's mean over its valid samples first, as EAT does.
        frame_length_ms, frame_shift_ms, preemphasis, low_freq, high_freq: Kaldi options; `high_freq <= 0` is an
            offset from Nyquist.

    Returns:
        `torch.Tensor` of shape `(num_frames, num_mel_bins)` for 1-D input, else `(batch_size, num_frames,
        num_mel_bins)` where `num_frames` is the largest item's frame count (capped at `max_frames`). Frames past an
        item's own count (see `kaldi_num_frames`) are 0, which is also EAT's padding value. float64 input is computed
        in float64, any other float dtype in float32. On a GPU with TF32 matmuls allowed, the mel projection runs in
        TF32 (10 mantissa bits), which can move log-mels by up to ~1e-3 (an estimate, not measured).
    """
    if not waveforms.is_floating_point():
        raise ValueError(
            f"kaldi_fbank expects float waveforms in [-1, 1], got dtype {waveforms.dtype}; convert int16 PCM with "
            "`waveforms.float() / 32768`"
        )
    unbatched = waveforms.ndim == 1
    if unbatched:
        waveforms = waveforms[None]
    if waveforms.ndim != 2:
        raise ValueError(
            f"kaldi_fbank expects (num_samples,) or (batch_size, num_samples), got {tuple(waveforms.shape)}"
        )
    dtype = torch.float64 if waveforms.dtype == torch.float64 else torch.float32
    waveforms = waveforms.to(dtype)
    batch_size, num_samples = waveforms.shape
    device = waveforms.device

    frame_length, frame_shift, fft_length = _frame_sizes(sampling_rate, frame_length_ms, frame_shift_ms)
    if lengths is None:
        lengths = [num_samples] * batch_size
    elif isinstance(lengths, torch.Tensor):
        lengths = lengths.tolist()
    lengths = [min(int(length), num_samples) for length in lengths]
    if len(lengths) != batch_size:
        raise ValueError(f"got {len(lengths)} lengths for a batch of {batch_size} waveforms")

    clip_mean = None
    if remove_clip_mean:
        # Per-frame DC removal makes this a no-op in exact arithmetic; it is kept so that float32 rounding follows
        # EAT's. Each mean is a 1-D reduction over exactly the valid samples, as EAT's `wav.mean()` is, so it comes
        # out bit-identical; it is subtracted chunk by chunk below rather than in a pass over the whole batch.
        clip_mean = torch.stack([waveforms[index, : max(length, 1)].mean() for index, length in enumerate(lengths)])

    num_frames = [kaldi_num_frames(length, sampling_rate, frame_length_ms, frame_shift_ms) for length in lengths]
    total_frames = kaldi_num_frames(num_samples, sampling_rate, frame_length_ms, frame_shift_ms)
    if max_frames is not None:
        total_frames = min(total_frames, max_frames)
    if total_frames == 0:
        empty = waveforms.new_zeros(batch_size, 0, num_mel_bins)
        return empty[0] if unbatched else empty

    window, mel_matrix = _fbank_constants(
        device, dtype, sampling_rate, num_mel_bins, frame_length, fft_length, float(low_freq), float(high_freq)
    )
    # A view: frames past `total_frames` (cropped away) are never computed.
    frames = waveforms.unfold(-1, frame_length, frame_shift)[:, :total_frames]
    log_mel = waveforms.new_empty(batch_size, total_frames, num_mel_bins)
    # On CPU a chunk's intermediates stay in cache, several times faster than one pass over the whole batch; on GPU
    # chunks only bound the memory of a long or large batch.
    chunk_frames = _CPU_CHUNK_FRAMES if device.type == "cpu" else _GPU_CHUNK_FRAMES
    items_per_chunk = max(1, chunk_frames // total_frames)
    frames_per_chunk = min(total_frames, chunk_frames)
    for item in range(0, batch_size, items_per_chunk):
        items = slice(item, item + items_per_chunk)
        chunk_mean = None if clip_mean is None else clip_mean[items, None, None]
        for frame in range(0, total_frames, frames_per_chunk):
            chunk = (items, slice(frame, frame + frames_per_chunk))
            log_mel[chunk] = _log_mel_of_frames(
                frames[chunk], chunk_mean, window, mel_matrix, preemphasis, fft_length
            )

    # Frames reaching into an item's padding are computed (and may hold anything, NaN included) but never returned.
    num_frames = torch.tensor(num_frames, device=device)
    frame_is_valid = torch.arange(total_frames, device=device) < num_frames[:, None]
    log_mel.masked_fill_(~frame_is_valid[..., None], 0.0)
    return log_mel[0] if unbatched else log_mel


def scale_to_rms(waveforms: torch.Tensor, rms: float, lengths: Sequence[int] | None = None) -> torch.Tensor:
    """Each item of a `(batch_size, num_samples)` batch scaled to root-mean-square `rms`, over its first
    `lengths[i]` samples when the batch is right-padded (the padding stays 0); an all-zero item stays as it is."""
    squares = waveforms.square()
    if lengths is None:
        power = squares.mean(dim=-1, keepdim=True)
    else:
        lengths = torch.as_tensor(lengths, device=waveforms.device)[:, None]
        valid = torch.arange(waveforms.shape[-1], device=waveforms.device) < lengths
        power = (squares * valid).sum(dim=-1, keepdim=True) / lengths.clamp(min=1)
    gain = torch.where(power > 0, rms / power.sqrt(), torch.ones_like(power))
    return waveforms * gain


def _channel_axis(shape: Sequence[int]) -> int:
    # Audio has far more samples than channels: the short axis is the channel axis.
    return int(np.argmin(shape))


def exportable_fbank_constants(
    sampling_rate: int = 16000,
    num_mel_bins: int = 128,
    frame_length_ms: float = FRAME_LENGTH_MS,
    frame_shift_ms: float = FRAME_SHIFT_MS,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The float32 constants of `exportable_kaldi_fbank`, to register as buffers of a module that is exported (tensors
    cached at module level would be traced as fake tensors): `window` `[frame_length]`, `dft_matrix` `[frame_length,
    fft_length]` (the cosine then the negated sine columns of the `fft_length // 2` bins below Nyquist, for a frame
    zero-padded to `fft_length`) and `mel_matrix` `[fft_length // 2, num_mel_bins]`."""
    frame_length, _, fft_length = _frame_sizes(sampling_rate, frame_length_ms, frame_shift_ms)
    window, mel_matrix = _fbank_constants(
        torch.device("cpu"), torch.float32, sampling_rate, num_mel_bins, frame_length, fft_length,
        float(low_freq), float(high_freq),
    )
    # Angles from the exact integer product t * k mod fft_length, in float64, rounded to float32 once.
    time = torch.arange(frame_length, dtype=torch.int64)[:, None]
    bins = torch.arange(fft_length // 2, dtype=torch.int64)[None, :]
    angles = (time * bins % fft_length).double() * (2 * math.pi / fft_length)
    dft_matrix = torch.cat([torch.cos(angles), -torch.sin(angles)], dim=1).float()
    return {"window": window.clone(), "dft_matrix": dft_matrix, "mel_matrix": mel_matrix.clone()}


def exportable_kaldi_fbank(
    waveforms: torch.Tensor,
    window: torch.Tensor,
    dft_matrix: torch.Tensor,
    mel_matrix: torch.Tensor,
    frame_shift: int = 160,
    preemphasis: float = 0.97,
) -> torch.Tensor:
    """`kaldi_fbank` of a `(batch_size, num_samples)` float32 batch of equal lengths, in a form `torch.export` and the
    ONNX exporter trace into one graph with a dynamic number of samples; constants from `exportable_fbank_constants`.

    The same Kaldi steps (clip mean, frames of a strided view, per-frame DC removal, pre-emphasis, window, power
    spectrum, mel, log floored at float32 eps) with no Python loop and no read of a length on the host: the real DFT
    is one matmul with fixed cosine and sine columns and the power is `re * re + im * im`, without a square root.
    It rounds differently from `kaldi_fbank` (a direct DFT rather than an FFT), within the tolerances that
    `kaldi_fbank` meets against torchaudio. Returns `(batch_size, num_frames, num_mel_bins)`.
    """
    waveforms = waveforms - waveforms.mean(dim=-1, keepdim=True)
    frames = waveforms.unfold(-1, window.shape[0], frame_shift)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    # Kaldi's pre-emphasis treats the sample before each frame's first as that first sample itself.
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    spectrum = ((frames - preemphasis * previous) * window) @ dft_matrix
    real, imaginary = spectrum.chunk(2, dim=-1)
    power = real * real + imaginary * imaginary
    return (power @ mel_matrix).clamp(min=_LOG_FLOOR).log()


def _ambiguous_array_error(shape: Sequence[int]) -> ValueError:
    return ValueError(
        f"The audio is a 2-D numpy array of shape {tuple(shape)}: one clip of {shape[0]} channels (channels first) or "
        f"a batch of {shape[0]} mono clips? EAT takes mono audio. Down-mix one multi-channel clip with "
        "`audio.mean(axis=0)`; pass a batch as a list of 1-D clips, `list(audio)` (or as a (batch_size, num_samples) "
        "torch tensor)."
    )


def _multichannel_error(what: str, shape: Sequence[int], axis: int, batched: bool) -> ValueError:
    sample_axis = axis + 1 if axis == len(shape) - 2 else axis - 1
    return ValueError(
        f"{what} has shape {tuple(shape)}, which looks like multi-channel audio (channels on axis {axis}, samples on "
        f"axis {sample_axis}). EAT takes mono audio: down-mix with `.mean(axis={axis})` (numpy) or "
        f"`.mean(dim={axis})` (torch) before calling the feature extractor"
        + (", or pass a list of 1-D mono arrays." if batched else ".")
    )


def _as_float_waveform(waveform, what: str) -> torch.Tensor:
    """One item as a float tensor (int16 PCM scaled by 1/32768), on its own device."""
    if isinstance(waveform, torch.Tensor):
        tensor = waveform
    else:
        array = np.asarray(waveform)
        if array.dtype.kind != "f" and array.dtype != np.int16:
            raise ValueError(
                f"{what} has dtype {array.dtype}; expected float audio in [-1, 1] or int16 PCM. Convert "
                "it, e.g. `audio.astype(np.float32) / 32768` for 16-bit PCM held in a wider integer type."
            )
        array = np.ascontiguousarray(array, dtype=np.float32 if array.dtype.kind == "f" else np.int16)
        # torch warns on read-only memory (memory-mapped or decoded by some libraries); it is only read here.
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    if tensor.dtype == torch.int16:
        # int16 PCM full scale is 32768; EAT's Kaldi fbank sees float waveforms in [-1, 1].
        return tensor.to(torch.float32) * _INT16_SCALE
    if not tensor.is_floating_point():
        raise ValueError(
            f"{what} has dtype {tensor.dtype}; expected float audio in [-1, 1] or int16 PCM. Convert it, "
            "e.g. `audio.float() / 32768` for 16-bit PCM held in a wider integer type."
        )
    return tensor.to(torch.float32)


class EATFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns mono 16 kHz audio into the normalized log-mel spectrograms EAT was trained on.

    Each clip has its mean removed, goes through a Kaldi fbank (25 ms Hann frames every 10 ms, 128 mel bins;
    see [`kaldi_fbank`]), is zero-padded at the end or cropped to `max_length` frames, then normalized as
    `(fbank - mean) / (2 * std)` (the factor 2 is the AST/EAT convention). Padded frames therefore hold
    `(0 - mean) / (2 * std)`, not 0, exactly as in EAT's training.

    Args:
        feature_size (`int`, *optional*, defaults to 1):
            Kept for API compatibility with other audio feature extractors.
        sampling_rate (`int`, *optional*, defaults to 16000):
            The sampling rate the audio must have, in Hz. Nothing is resampled here.
        num_mel_bins (`int`, *optional*, defaults to 128):
            Number of mel filters (the spectrogram's frequency axis).
        max_length (`int`, *optional*, defaults to 1024):
            Number of frames every spectrogram is padded or cropped to (1024 frames = 10.24 s).
        padding_value (`float`, *optional*, defaults to 0.0):
            Fbank value of padded frames before normalization (EAT pads with 0).
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to apply `(fbank - mean) / (2 * std)`.
        mean (`float`, *optional*, defaults to -4.268):
            Fbank mean of the training set (AudioSet by default; see [`~EATFeatureExtractor.from_preset`]).
        std (`float`, *optional*, defaults to 4.569):
            Fbank standard deviation of the training set.
        return_attention_mask (`bool`, *optional*, defaults to `False`):
            Whether to return a frame-level `attention_mask` by default.
        waveform_rms (`float`, *optional*):
            When set, every clip (every window of a long one) is scaled to this root-mean-square level before the
            fbank: per-clip loudness normalisation, for data recorded at very different levels (EAT has none; its
            training only varies the gain by ±6 dB). 0.05 suits speech near -26 dBFS. Silent clips stay silent.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size=1,
        sampling_rate=16000,
        num_mel_bins=128,
        max_length=1024,
        padding_value=0.0,
        do_normalize=True,
        mean=-4.268,
        std=4.569,
        return_attention_mask=False,
        waveform_rms=None,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.num_mel_bins = num_mel_bins
        self.max_length = max_length
        self.do_normalize = do_normalize
        self.mean = mean
        self.std = std
        if waveform_rms is not None and not waveform_rms > 0:
            raise ValueError(f"waveform_rms must be a positive level (e.g. 0.05) or None, got {waveform_rms!r}")
        self.waveform_rms = waveform_rms

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "EATFeatureExtractor":
        """Extractor with the statistics and length of an official recipe: "audioset", "esc50" or "spc2"."""
        if name not in NORMALIZATION_PRESETS:
            raise ValueError(
                f"unknown preset {name!r}; choose one of {', '.join(repr(p) for p in NORMALIZATION_PRESETS)}"
            )
        return cls(**{**NORMALIZATION_PRESETS[name], **kwargs})

    @classmethod
    def from_name_or_path(cls, name_or_path: str, **kwargs) -> "EATFeatureExtractor":
        """A normalization preset (`audioset`, `esc50`, `spc2`), or a saved extractor (folder or Hub id).

        Keyword arguments override a preset's fields, or go to `from_pretrained` for a folder or Hub id.
        """
        if name_or_path in NORMALIZATION_PRESETS:
            return cls.from_preset(name_or_path, **kwargs)
        return cls.from_pretrained(name_or_path, **kwargs)

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        return_tensors=None,
        return_attention_mask: bool | None = None,
        max_length: int | None = None,
        truncation: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Featurize one clip or a batch of clips.

        Args:
            raw_speech (`np.ndarray`, `torch.Tensor`, or a list of them or of lists of floats):
                Mono audio at `sampling_rate`. One 1-D clip, a list of 1-D clips of any lengths, or a 2-D
                `(batch_size, num_samples)` torch tensor. (A 2-D numpy array is refused: `[2, N]` may as well be one
                stereo clip.) Float samples are taken as they are, in [-1, 1] (beyond 16 they are refused as integer
                PCM stored as float); int16 PCM is scaled by 1/32768 to that range. Other dtypes are rejected.
            sampling_rate (`int`, *optional*):
                Sampling rate of `raw_speech`. It must equal the extractor's; pass it to catch mismatches.
            return_tensors (`str`, *optional*):
                `"pt"` for torch tensors (on the device of torch input), `"np"` or `None` for numpy arrays.
            return_attention_mask (`bool`, *optional*):
                Whether to add a frame-level `attention_mask` (1 for real frames, 0 for padding). Defaults to the
                extractor's `return_attention_mask`.
            max_length (`int`, *optional*):
                Frames to pad or crop to. Defaults to the extractor's `max_length`.
            truncation (`bool`, *optional*):
                What to do with audio longer than `max_length` frames: by default it is cropped to its first
                `max_length` frames with a warning (once); `True` crops it without one; `False` raises instead.

        Returns:
            [`BatchFeature`] with `input_values` of shape `(batch_size, max_length, num_mel_bins)` (float32) and,
            if asked, `attention_mask` of shape `(batch_size, max_length)` (int32 numpy or int64 torch).
        """
        # Padding to `max_length` always happens; accepted for pipeline compatibility.
        kwargs.pop("padding", None)
        if kwargs:
            logger.warning(f"EATFeatureExtractor ignores the unexpected arguments {sorted(kwargs)}.")
        if sampling_rate is None:
            logger.warning(
                f"No `sampling_rate` was passed to {self.__class__.__name__}; the audio is assumed to be at "
                f"{self.sampling_rate} Hz. Pass `sampling_rate=` so that a mismatch is caught instead of silently "
                "producing wrong features."
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"The audio is at {sampling_rate} Hz, but {self.__class__.__name__} expects {self.sampling_rate} Hz "
                "and does not resample. Resample it first, e.g. with `librosa.resample(audio, orig_sr="
                f"{sampling_rate}, target_sr={self.sampling_rate})`, `torchaudio.functional.resample(audio, "
                f"{sampling_rate}, {self.sampling_rate})`, or for a datasets column `dataset.cast_column(\"audio\", "
                f"Audio(sampling_rate={self.sampling_rate}))`."
            )
        if return_tensors is not None and return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        max_length = self.max_length if max_length is None else max_length
        if not isinstance(max_length, (int, np.integer)) or max_length < 1:
            raise ValueError(f"max_length must be a positive number of frames, got {max_length!r}")
        max_length = int(max_length)
        return_attention_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask

        waveforms, lengths = self._collate(raw_speech)
        self._check_crop(lengths, max_length, truncation)
        if self.waveform_rms is not None:
            waveforms = scale_to_rms(waveforms, self.waveform_rms, lengths)
        fbank = kaldi_fbank(
            waveforms,
            sampling_rate=self.sampling_rate,
            num_mel_bins=self.num_mel_bins,
            lengths=lengths,
            max_frames=max_length,
        )
        frame_counts = torch.tensor(
            [min(kaldi_num_frames(length, self.sampling_rate), max_length) for length in lengths],
            device=fbank.device,
        )
        frame_is_valid = torch.arange(max_length, device=fbank.device) < frame_counts[:, None]
        # Padding happens on the fbank, before normalization, as in EAT: padded frames end up at -mean / (2 * std).
        input_values = fbank.new_full((len(lengths), max_length, self.num_mel_bins), float(self.padding_value))
        input_values[:, : fbank.shape[1]] = fbank
        input_values.masked_fill_(~frame_is_valid[..., None], float(self.padding_value))
        if self.do_normalize:
            input_values.sub_(self.mean).div_(2 * self.std)

        outputs = {"input_values": input_values}
        if return_attention_mask:
            outputs["attention_mask"] = frame_is_valid.long()
        if return_tensors != "pt":
            outputs["input_values"] = outputs["input_values"].cpu().numpy()
            if return_attention_mask:
                outputs["attention_mask"] = outputs["attention_mask"].cpu().numpy().astype(np.int32)
        return BatchFeature(outputs, tensor_type=return_tensors)

    def _collate(self, raw_speech) -> tuple[torch.Tensor, list[int]]:
        """Validated float32 batch `(batch_size, num_samples)`, right-padded with zeros, and each item's length."""
        if isinstance(raw_speech, np.ndarray) and raw_speech.dtype == object and raw_speech.ndim == 1:
            raw_speech = list(raw_speech)  # a ragged batch, as numpy stores clips of different lengths
        if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
            shape = tuple(raw_speech.shape)
            if len(shape) == 1:
                items = [raw_speech]
            elif len(shape) == 2:
                # (num_samples, channels) as soundfile returns it would otherwise read as many sub-frame clips.
                if shape[1] < self._frame_length() <= shape[0]:
                    raise _multichannel_error("The audio", shape, 1, batched=False)
                if isinstance(raw_speech, np.ndarray):
                    raise _ambiguous_array_error(shape)
                # A rectangular batch is validated in one pass instead of once per row (one sync per row on GPU).
                if shape[0] == 0:
                    raise ValueError("Got an empty batch: pass at least one clip.")
                batch = _as_float_waveform(raw_speech, "The audio batch")
                self._check_length(shape[1], 0)
                self._check_samples(batch)
                return batch.contiguous(), [shape[1]] * shape[0]
            elif len(shape) == 3:
                axis = 1 + _channel_axis(shape[1:])
                raise _multichannel_error("The batch", shape, axis, batched=True)
            else:
                raise ValueError(
                    f"Expected a 1-D clip or a 2-D (batch_size, num_samples) batch of mono audio, got shape {shape}."
                )
        elif isinstance(raw_speech, (list, tuple)):
            if len(raw_speech) == 0:
                raise ValueError("Got an empty batch: pass at least one clip.")
            is_one_clip = all(isinstance(sample, (int, float, np.number)) for sample in raw_speech)
            items = [raw_speech] if is_one_clip else list(raw_speech)
        else:
            raise ValueError(
                "Expected audio as a numpy array, a torch tensor, or a list of them, got "
                f"{type(raw_speech).__name__}. "
                "Decode files first, e.g. `soundfile.read(path, dtype='float32')`, or use "
                "`pipeline(\"audio-classification\")`, which decodes paths with ffmpeg."
            )

        waveforms = []
        for index, item in enumerate(items):
            waveform = _as_float_waveform(item, f"batch item {index}")
            if waveform.ndim == 2:
                raise _multichannel_error(f"batch item {index}", waveform.shape, _channel_axis(waveform.shape), False)
            if waveform.ndim != 1:
                raise ValueError(
                    f"batch item {index} has shape {tuple(waveform.shape)}; each clip must be 1-D mono audio."
                )
            self._check_length(waveform.shape[0], index)
            self._check_samples(waveform[None], first_index=index)
            waveforms.append(waveform)

        devices = {waveform.device for waveform in waveforms}
        device = devices.pop() if len(devices) == 1 else torch.device("cpu")
        lengths = [waveform.shape[0] for waveform in waveforms]
        if len(set(lengths)) == 1:
            return torch.stack([waveform.to(device) for waveform in waveforms]), lengths
        batch = torch.zeros(len(waveforms), max(lengths), device=device)
        for index, waveform in enumerate(waveforms):
            batch[index, : lengths[index]] = waveform.to(device)
        return batch, lengths

    def _frame_length(self) -> int:
        return _frame_sizes(self.sampling_rate, FRAME_LENGTH_MS, FRAME_SHIFT_MS)[0]

    def _check_length(self, num_samples: int, index: int) -> None:
        frame_length = self._frame_length()
        if num_samples == 0:
            raise ValueError(
                f"batch item {index} is empty (0 samples). Drop it, or pad it with zeros to at least {frame_length} "
                f"samples (one 25 ms frame)."
            )
        if num_samples < frame_length:
            raise ValueError(
                f"batch item {index} has {num_samples} samples ({1000 * num_samples / self.sampling_rate:.1f} ms), "
                f"shorter than one 25 ms frame ({frame_length} samples), so it has no fbank frame. Pad it with zeros "
                f"to at least {frame_length} samples, or drop it."
            )

    def _check_crop(self, lengths: list[int], max_length: int, truncation: bool | None) -> None:
        longest = max(kaldi_num_frames(length, self.sampling_rate) for length in lengths)
        if longest <= max_length or truncation:
            return
        kept_seconds = kaldi_num_samples(max_length, self.sampling_rate) / self.sampling_rate
        if truncation is False:
            raise ValueError(
                f"truncation=False, but a clip has {longest} frames ({longest * FRAME_SHIFT_MS / 1000:.1f} s), more "
                f"than max_length={max_length} frames ({kept_seconds:.2f} s). Pass a larger max_length, or classify "
                "long audio in windows with `pipeline(\"audio-classification\", model=..., chunk_length_s=...)`."
            )
        # Once per length: a training or evaluation loop would otherwise repeat it every batch.
        logger.warning_once(
            f"{self.__class__.__name__} crops audio longer than max_length={max_length} frames to its first "
            f"{kept_seconds:.2f} s: the model sees nothing after that. Classify long audio in windows with "
            "`pipeline(\"audio-classification\", model=..., chunk_length_s=...)`; pass truncation=True to crop "
            "without this warning."
        )

    @staticmethod
    def _check_samples(waveforms: torch.Tensor, first_index: int = 0) -> None:
        """Checks a `(batch_size, num_samples)` batch for NaN, infinite and far-out-of-range samples, in one
        reduction (one device sync); `abs().amax()` is cheaper than `isfinite`, and NaN propagates through it."""
        peaks = waveforms.abs().amax(dim=-1)
        is_bad = ~(peaks <= _MAX_FLOAT_PEAK)
        if not bool(is_bad.any()):
            return
        row = int(is_bad.nonzero()[0, 0])
        index, peak = first_index + row, float(peaks[row])
        if not math.isfinite(peak):
            raise ValueError(
                f"batch item {index} contains NaN or infinite samples. Fix the decoding, or replace them, e.g. with "
                "`np.nan_to_num(audio)` / `torch.nan_to_num(audio)`."
            )
        raise ValueError(
            f"batch item {index} has float samples up to {peak:g}, far outside [-1, 1]: this looks like integer PCM "
            "stored as float. Scale it to [-1, 1], e.g. `audio / 32768` for 16-bit PCM, or pass the int16 array "
            "itself (it is scaled for you)."
        )


__all__ = [
    "FRAMES_PER_SECOND",
    "FRAME_LENGTH_MS",
    "FRAME_SHIFT_MS",
    "NORMALIZATION_PRESETS",
    "EATFeatureExtractor",
    "exportable_fbank_constants",
    "exportable_kaldi_fbank",
    "frames_to_seconds",
    "kaldi_fbank",
    "kaldi_num_frames",
    "kaldi_num_samples",
    "patch_aligned",
    "scale_to_rms",
    "seconds_to_frames",
    "seconds_to_patch_frames",
]
