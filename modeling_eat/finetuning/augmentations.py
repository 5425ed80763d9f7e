"""The fine-tuning augmentations of EAT (`data/raw_audio_dataset.py`, `utils/mixup.py` of the EAT repository), as the
official code applies them: roll + gain on the raw waveform (in the dataset transform); then, on the normalised fbank
of a training batch, SPC-2's noise + time shift, batch mixup, and SpecAugment last (in
`EATFinetuningTrainer.compute_loss`, only while the model is in training mode, so evaluation sees clean clips)."""

import numpy as np
import torch


def roll_and_gain(waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """EAT's `roll_aug`: a circular shift by a random offset in [0, len), times a gain of Beta(10, 10) + 0.5."""
    shifted = np.roll(waveform, int(rng.integers(0, len(waveform))))
    return (shifted * (rng.beta(10.0, 10.0) + 0.5)).astype(waveform.dtype, copy=False)


def random_bands(batch_size: int, size: int, max_width: float, rng: np.random.Generator, device=None) -> torch.Tensor:
    """One contiguous band per row, True inside: width uniform in [0, max_width), start uniform where it fits."""
    widths = np.floor(rng.random(batch_size) * max_width).astype(np.int64)
    starts = np.floor(rng.random(batch_size) * (size - widths + 1)).astype(np.int64)
    positions = torch.arange(size, device=device)
    starts, ends = torch.as_tensor(starts, device=device), torch.as_tensor(starts + widths, device=device)
    return (positions >= starts[:, None]) & (positions < ends[:, None])


def spec_augment(input_values: torch.Tensor, mask_ratio: float, rng: np.random.Generator) -> torch.Tensor:
    """SpecAugment as EAT fine-tunes with it: one frequency band and one time band per clip, drawn independently
    per clip, set to 0 (the normalised mean). Widest bands: `mask_ratio * num_mel_bins` bins (EAT's freqm =
    128 * ratio) and `mask_ratio * num_frames` frames (timem = target_length * ratio). `(batch, frames, mel)`."""
    if mask_ratio <= 0:
        return input_values
    batch_size, num_frames, num_mel_bins = input_values.shape
    freq_bands = random_bands(batch_size, num_mel_bins, mask_ratio * num_mel_bins, rng, input_values.device)
    time_bands = random_bands(batch_size, num_frames, mask_ratio * num_frames, rng, input_values.device)
    return input_values.masked_fill(freq_bands[:, None, :] | time_bands[:, :, None], 0.0)


def mixup(
    input_values: torch.Tensor, targets: torch.Tensor, alpha: float, prob: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Batch mixup as in EAT (timm's `mode="batch"`): with probability `prob`, every clip is mixed with the clip at
    the mirrored batch position using one `lam ~ Beta(alpha, alpha)`, and so are the float targets. Returns
    `(inputs, targets, lam)`; `lam == 1` when the batch was left alone."""
    if alpha <= 0 or rng.random() >= prob:
        return input_values, targets, 1.0
    lam = float(rng.beta(alpha, alpha))
    mixed_inputs = lam * input_values + (1.0 - lam) * input_values.flip(0)
    mixed_targets = lam * targets + (1.0 - lam) * targets.flip(0)
    return mixed_inputs, mixed_targets, lam


def noise_and_shift(input_values: torch.Tensor, rng: np.random.Generator, max_shift: int = 10) -> torch.Tensor:
    """SPC-2's fbank augmentation, per clip: add uniform noise scaled by U(0, 1) / 10, then roll the frames by an
    offset in [-max_shift, max_shift)."""
    batch_size = input_values.shape[0]
    noise = torch.as_tensor(rng.random(input_values.shape), dtype=input_values.dtype, device=input_values.device)
    scale = torch.as_tensor(rng.random(batch_size) / 10, dtype=input_values.dtype, device=input_values.device)
    noisy = input_values + noise * scale[:, None, None]
    shifts = rng.integers(-max_shift, max_shift, size=batch_size)
    return torch.stack([torch.roll(clip, int(shift), dims=0) for clip, shift in zip(noisy, shifts)])


__all__ = ["mixup", "noise_and_shift", "random_bands", "roll_and_gain", "spec_augment"]
