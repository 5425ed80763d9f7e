"""Patch masking for EAT pre-training.

This module is the single home of masking in the project; the model, the
collator and the tests all import it from here. It depends on torch only, so it
can ship to the Hugging Face Hub as ``trust_remote_code`` code.

Conventions (shared by every function below):

* The spectrogram patch grid is ``num_time_patches x num_freq_patches`` (64 x 8
  for 1024 frames x 128 mel bins with 16 x 16 patches). Token index is
  ``t * num_freq_patches + f``, matching the conv patch embedding's flatten.
* A mask is a ``torch.bool`` tensor ``[batch, num_time_patches * num_freq_patches]``
  with ``True`` = masked (hidden from the student), ``False`` = visible.
* Every row of a mask has exactly the same number of visible patches, so the
  student's visible tokens can be gathered into a dense ``[batch, n_visible, D]``
  tensor without padding.

Randomness and devices: every function takes an optional ``torch.Generator``.
The generator must live on the device the mask is drawn on (a CPU generator for
``device="cpu"``, a CUDA generator for ``device="cuda"``); torch raises otherwise.
When ``device`` is omitted it defaults to the generator's device, or to CPU when
no generator is given. With a fixed generator state the output is deterministic
on a given device; CPU and CUDA draws differ from each other.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Optional, Union

import torch

__all__ = [
    "num_visible_patches",
    "inverse_block_mask",
    "random_mask",
    "visible_run_lengths",
    "EATMaskGenerator",
]

DeviceLike = Optional[Union[str, torch.device]]

# Guards int(N * keep_prob) against float round-off: 1 - 0.9 is 0.0999...98, so
# a plain int(10 * (1 - 0.9)) would give 0 instead of 1. The tolerance is far
# below 1 / N for any realistic grid, so genuine fractions still truncate.
_FLOOR_EPS = 1e-6


def _floor(x: float) -> int:
    return int(math.floor(x + _FLOOR_EPS))


def _check_positive_int(name: str, value: Any) -> int:
    # operator.index accepts numpy / 0-d torch integers from configs but rejects 2.5 and "5".
    try:
        if isinstance(value, bool):
            raise TypeError
        as_int = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if as_int < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return as_int


def _check_ratio(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value!r}")
    return value


def _check_adjust(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"mask_prob_adjust must be a non-negative number, got {value!r}") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"mask_prob_adjust must be a finite non-negative number, got {value!r}")
    return value


def _resolve_device(generator: Optional[torch.Generator], device: DeviceLike) -> torch.device:
    if device is not None:
        return torch.device(device)
    if generator is not None:
        return generator.device
    return torch.device("cpu")


def num_visible_patches(num_patches: int, mask_ratio: float) -> int:
    """Number of visible patches per row: ``int(num_patches * (1 - mask_ratio))``.

    Exposed so the model (e.g. to size buffers) and the tests use the same count
    as the mask generators. 512 patches at 0.8 -> 102; at 0.75 -> 128.
    """
    num_patches = _check_positive_int("num_patches", num_patches)
    mask_ratio = _check_ratio("mask_ratio", mask_ratio)
    return _floor(num_patches * (1.0 - mask_ratio))


def _keep_top_scores(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Boolean mask (True = masked) that keeps the ``n_keep`` highest scores per row."""
    mask = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if n_keep > 0:
        keep_idx = scores.topk(n_keep, dim=1, sorted=False).indices
        mask.scatter_(1, keep_idx, False)
    return mask


def inverse_block_mask(
    batch_size: int,
    num_time_patches: int,
    num_freq_patches: int,
    mask_ratio: float = 0.8,
    mask_prob_adjust: float = 0.07,
    block_size: int = 5,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """EAT's inverse block mask: the *visible* patches come in 2-D blocks.

    Masking random blocks (as in plain block masking) would leave the visible
    set scattered; EAT instead picks the few patches the student may see as
    square blocks, so the student has to predict large contiguous masked regions
    from a handful of compact visible islands, which makes the task harder than
    recovering isolated holes.

    Procedure, per row (all rows are drawn in parallel):

    1. keep probability ``p = 1 - mask_ratio``; ``n_keep = int(L * p)``;
    2. ``int(L * (p + mask_prob_adjust) / block_size**2)`` block centres drawn
       uniformly over the grid (duplicates allowed); ``mask_prob_adjust``
       over-provisions centres because blocks overlap and get clipped at edges;
    3. a ``block_size x block_size`` square of kept patches around each centre
       (offsets ``-(block_size // 2) .. (block_size - 1) // 2``), with indices
       clamped to the grid, so a block at an edge is squashed, never wrapped;
       with 8 frequency columns a 5-wide block covers 5 of them;
    4. the kept count is forced to exactly ``n_keep``: surplus block patches
       are dropped at random, a shortfall is filled with random non-block
       patches. This is done in one shot as the top-``n_keep`` of
       ``is_block + U[0, 1)``, since every block patch outranks every
       non-block patch and ties inside each group are broken uniformly;
    5. invert: the returned mask is True where a patch is *not* kept.

    On tiny grids step 2 can yield zero centres, in which case the visible set
    is simply uniform random (still exactly ``n_keep`` patches).

    Returns a bool tensor ``[batch_size, num_time_patches * num_freq_patches]``,
    True = masked. See the module docstring for generator/device rules.
    """
    batch_size = _check_positive_int("batch_size", batch_size)
    num_time_patches = _check_positive_int("num_time_patches", num_time_patches)
    num_freq_patches = _check_positive_int("num_freq_patches", num_freq_patches)
    mask_ratio = _check_ratio("mask_ratio", mask_ratio)
    mask_prob_adjust = _check_adjust(mask_prob_adjust)
    block_size = _check_positive_int("block_size", block_size)
    device = _resolve_device(generator, device)

    num_patches = num_time_patches * num_freq_patches
    keep_prob = 1.0 - mask_ratio
    n_keep = _floor(num_patches * keep_prob)
    n_blocks = _floor(num_patches * (keep_prob + mask_prob_adjust) / block_size**2)

    is_block = torch.zeros(batch_size, num_patches, dtype=torch.float32, device=device)
    if n_blocks > 0:
        centre_t = torch.randint(
            0, num_time_patches, (batch_size, n_blocks), generator=generator, device=device
        )
        centre_f = torch.randint(
            0, num_freq_patches, (batch_size, n_blocks), generator=generator, device=device
        )
        offsets = torch.arange(block_size, device=device) - block_size // 2
        # [B, n_blocks, k, 1] and [B, n_blocks, 1, k] broadcast to every cell of every block.
        t = (centre_t[:, :, None, None] + offsets[:, None]).clamp_(0, num_time_patches - 1)
        f = (centre_f[:, :, None, None] + offsets[None, :]).clamp_(0, num_freq_patches - 1)
        flat = (t * num_freq_patches + f).reshape(batch_size, -1)
        is_block.scatter_(1, flat, 1.0)

    noise = torch.rand(batch_size, num_patches, generator=generator, device=device)
    return _keep_top_scores(is_block + noise, n_keep)


def random_mask(
    batch_size: int,
    num_patches: int,
    mask_ratio: float,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Uniform random mask (MAE / MaskSpec style) with an exact count per row.

    Exactly ``int(num_patches * mask_ratio)`` patches are masked in every row,
    i.e. ``num_patches - int(num_patches * mask_ratio)`` stay visible (for
    512 patches at 0.8: 409 masked, 103 visible; note this rounds the other way
    from :func:`inverse_block_mask`, which fixes the *visible* count).

    Returns a bool tensor ``[batch_size, num_patches]``, True = masked.
    """
    batch_size = _check_positive_int("batch_size", batch_size)
    num_patches = _check_positive_int("num_patches", num_patches)
    mask_ratio = _check_ratio("mask_ratio", mask_ratio)
    device = _resolve_device(generator, device)

    n_mask = _floor(num_patches * mask_ratio)
    noise = torch.rand(batch_size, num_patches, generator=generator, device=device)
    return _keep_top_scores(noise, num_patches - n_mask)


def visible_run_lengths(
    mask: torch.Tensor, num_time_patches: int, num_freq_patches: int
) -> torch.Tensor:
    """Mean length of runs of visible patches along time, per mask row.

    Each frequency column is scanned along time; a run is a maximal stretch of
    consecutive visible patches. The result pools all columns of a row:
    ``visible patches / number of runs`` (0 for a row with nothing visible).
    Inverse block masks give long runs (about 4 on the 64 x 8 grid at 0.8),
    uniform random masks short ones (about ``1 / mask_ratio``, 1.25 at 0.8),
    which makes it a simple blockiness statistic.

    ``mask``: bool ``[batch, num_time_patches * num_freq_patches]``, True = masked.
    Returns float32 ``[batch]``.
    """
    num_time_patches = _check_positive_int("num_time_patches", num_time_patches)
    num_freq_patches = _check_positive_int("num_freq_patches", num_freq_patches)
    if mask.dim() != 2 or mask.shape[1] != num_time_patches * num_freq_patches:
        raise ValueError(
            f"mask must have shape [batch, {num_time_patches * num_freq_patches}], "
            f"got {tuple(mask.shape)}"
        )
    visible = ~mask.bool().view(mask.shape[0], num_time_patches, num_freq_patches)
    starts = visible.clone()
    starts[:, 1:] &= ~visible[:, :-1]
    n_visible = visible.sum(dim=(1, 2)).float()
    n_runs = starts.sum(dim=(1, 2)).float()
    return torch.where(n_runs > 0, n_visible / n_runs.clamp(min=1), torch.zeros_like(n_visible))


class EATMaskGenerator:
    """Draws the per-clone student masks for a batch of clips.

    Configured from any object exposing ``mask_strategy`` (``"inverse_block"``
    or ``"random"``), ``mask_ratio``, ``mask_prob_adjust``, ``mask_block_size``
    and ``clone_batch`` (an ``EATConfig`` in practice). Only those attributes
    are read, once, at construction.

    Cheap enough for a DataLoader collate function on CPU, which is where EAT
    draws its masks so the GPU step does not wait on them.
    """

    STRATEGIES = ("inverse_block", "random")

    def __init__(self, config: Any):
        strategy = getattr(config, "mask_strategy")
        if strategy not in self.STRATEGIES:
            raise ValueError(f"mask_strategy must be one of {self.STRATEGIES}, got {strategy!r}")
        self.mask_strategy: str = strategy
        self.mask_ratio = _check_ratio("mask_ratio", getattr(config, "mask_ratio"))
        self.mask_prob_adjust = _check_adjust(getattr(config, "mask_prob_adjust"))
        self.mask_block_size = _check_positive_int("mask_block_size", getattr(config, "mask_block_size"))
        self.clone_batch = _check_positive_int("clone_batch", getattr(config, "clone_batch"))

    def num_visible(self, num_time_patches: int, num_freq_patches: int) -> int:
        """Visible patches per clone that :meth:`__call__` produces for this grid."""
        num_patches = _check_positive_int("num_time_patches", num_time_patches) * _check_positive_int(
            "num_freq_patches", num_freq_patches
        )
        if self.mask_strategy == "random":
            return num_patches - _floor(num_patches * self.mask_ratio)
        return _floor(num_patches * (1.0 - self.mask_ratio))

    def __call__(
        self,
        batch_size: int,
        num_time_patches: int,
        num_freq_patches: int,
        generator: Optional[torch.Generator] = None,
        device: DeviceLike = None,
    ) -> torch.Tensor:
        """Return ``[batch_size * clone_batch, N]`` bool masks, True = masked.

        Rows ``b * clone_batch .. b * clone_batch + clone_batch - 1`` belong to
        clip ``b`` (clip-major), matching ``x.repeat_interleave(clone_batch, 0)``
        of the clips. Every row is an independent draw, so clip-major order is
        just a labelling of the rows.
        """
        batch_size = _check_positive_int("batch_size", batch_size)
        rows = batch_size * self.clone_batch
        if self.mask_strategy == "random":
            num_patches = _check_positive_int("num_time_patches", num_time_patches) * _check_positive_int(
                "num_freq_patches", num_freq_patches
            )
            return random_mask(rows, num_patches, self.mask_ratio, generator=generator, device=device)
        return inverse_block_mask(
            rows,
            num_time_patches,
            num_freq_patches,
            mask_ratio=self.mask_ratio,
            mask_prob_adjust=self.mask_prob_adjust,
            block_size=self.mask_block_size,
            generator=generator,
            device=device,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mask_strategy={self.mask_strategy!r}, mask_ratio={self.mask_ratio}, "
            f"mask_prob_adjust={self.mask_prob_adjust}, mask_block_size={self.mask_block_size}, "
            f"clone_batch={self.clone_batch})"
        )
