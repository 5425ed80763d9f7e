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
"""Patch masks of EAT pre-training: EAT's inverse block multi-mask and MaskSpec's uniform random mask, drawn and
applied.

The single home of masking: the model, the pre-training collator and the tests draw their masks here; the masking
settings of a config are validated here, once, when an `EATMaskGenerator` is built from it, which also says how many
patches its masks leave visible; and the student's view (`drop_masked_tokens`) and the objectives' (`EATMaskIndex`)
are taken here.

Conventions shared by every function below:
- the patch grid is `num_time_patches x num_freq_patches` (64 x 8 for 1024 frames x 128 mel bins in 16 x 16
  patches); patch index `t * num_freq_patches + f`, as the patch embedding flattens them;
- a mask is a `torch.bool` tensor `(batch_size, num_patches)`, True where the patch is hidden from the student;
- every row of a mask leaves the same number of patches visible, so the visible tokens gather into a dense
  `(batch_size, num_visible, hidden_size)` tensor without padding.

Randomness: every function takes an optional `torch.Generator`, which must live on the device the mask is drawn on.
Without `device`, masks are drawn on the generator's device (the CPU without a generator). A fixed generator state
gives the same masks on a given device; CPU and CUDA draws differ.
"""

import math
import operator

import torch


MASK_STRATEGIES = ("inverse_block", "random")

# Counts are `int(num_patches * fraction)`; without the tolerance, float round-off would turn 10 * (1 - 0.9) =
# 0.9999999999999998 into 0 visible patches instead of 1. It is far below 1 / num_patches for any real grid.
_FLOOR_TOLERANCE = 1e-6


def _floor(value: float) -> int:
    return int(math.floor(value + _FLOOR_TOLERANCE))


def _checked(name: str, value, convert, is_valid, requirement: str):
    try:
        converted = convert(value)
    except (TypeError, ValueError):
        converted = None
    if converted is None or not is_valid(converted):
        raise ValueError(f"{name} must be {requirement}, got {value!r}") from None
    return converted


def _as_index(value) -> int:
    # operator.index takes numpy and 0-dim torch integers from configs, and refuses 2.5 and "5" (and booleans here).
    if isinstance(value, bool):
        raise TypeError
    return operator.index(value)


def _positive_int(name: str, value) -> int:
    return _checked(name, value, _as_index, lambda number: number >= 1, "a positive integer")


def _ratio(name: str, value) -> float:
    return _checked(name, value, float, lambda number: 0.0 < number < 1.0, "a number strictly between 0 and 1")


def _non_negative(name: str, value) -> float:
    is_valid = lambda number: math.isfinite(number) and number >= 0.0  # noqa: E731
    return _checked(name, value, float, is_valid, "a finite non-negative number")


def _grid_size(num_time_patches: int, num_freq_patches: int) -> int:
    return _positive_int("num_time_patches", num_time_patches) * _positive_int("num_freq_patches", num_freq_patches)


def _mask_device(generator: torch.Generator | None, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return generator.device if generator is not None else torch.device("cpu")


def _keep_top_scores(scores: torch.Tensor, num_keep: int) -> torch.Tensor:
    """A mask (True = hidden) that keeps the `num_keep` highest scores of each row visible."""
    mask = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if num_keep > 0:
        mask.scatter_(1, scores.topk(num_keep, dim=1, sorted=False).indices, False)
    return mask


def inverse_block_mask(
    batch_size: int,
    num_time_patches: int,
    num_freq_patches: int,
    mask_ratio: float = 0.8,
    mask_prob_adjust: float = 0.07,
    block_size: int = 5,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """EAT's inverse block mask: the *visible* patches come in square blocks.

    Masking blocks would leave the visible patches scattered, so that the student recovers isolated holes from close
    neighbours. EAT keeps a few compact visible islands instead, and the student has to predict large contiguous
    hidden regions, a harder task. Per row, all rows drawn at once:

    1. keep probability `p = 1 - mask_ratio`, `num_keep = int(num_patches * p)` visible patches;
    2. `int(num_patches * (p + mask_prob_adjust) / block_size**2)` block centres drawn uniformly (duplicates allowed;
       the adjustment over-provisions centres because blocks overlap and are clipped at the edges);
    3. a `block_size x block_size` square around each centre (offsets `-(block_size // 2) .. (block_size - 1) // 2`),
       clamped to the grid, so a block at an edge is squashed, never wrapped;
    4. exactly `num_keep` patches kept: the top `num_keep` of `in_block + U[0, 1)`, which drops surplus block
       patches at random, fills a shortfall with random other patches, and breaks ties uniformly.

    On grids too small for one centre the visible patches are uniformly random (still exactly `num_keep`).

    Returns:
        `torch.BoolTensor` of shape `(batch_size, num_time_patches * num_freq_patches)`, True = hidden.
    """
    batch_size = _positive_int("batch_size", batch_size)
    num_patches = _grid_size(num_time_patches, num_freq_patches)
    keep_probability = 1.0 - _ratio("mask_ratio", mask_ratio)
    mask_prob_adjust = _non_negative("mask_prob_adjust", mask_prob_adjust)
    block_size = _positive_int("block_size", block_size)
    device = _mask_device(generator, device)

    num_keep = _floor(num_patches * keep_probability)
    num_blocks = _floor(num_patches * (keep_probability + mask_prob_adjust) / block_size**2)
    in_block = torch.zeros(batch_size, num_patches, dtype=torch.float32, device=device)
    if num_blocks > 0:
        shape = (batch_size, num_blocks)
        centre_time = torch.randint(0, num_time_patches, shape, generator=generator, device=device)
        centre_freq = torch.randint(0, num_freq_patches, shape, generator=generator, device=device)
        offsets = torch.arange(block_size, device=device) - block_size // 2
        # (batch, blocks, size, 1) and (batch, blocks, 1, size) broadcast to every cell of every block.
        time = (centre_time[:, :, None, None] + offsets[:, None]).clamp_(0, num_time_patches - 1)
        freq = (centre_freq[:, :, None, None] + offsets[None, :]).clamp_(0, num_freq_patches - 1)
        in_block.scatter_(1, (time * num_freq_patches + freq).reshape(batch_size, -1), 1.0)
    noise = torch.rand(batch_size, num_patches, generator=generator, device=device)
    return _keep_top_scores(in_block + noise, num_keep)


def random_mask(
    batch_size: int,
    num_patches: int,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Uniform random mask (MAE / MaskSpec) hiding exactly `int(num_patches * mask_ratio)` patches of every row.

    It fixes the *hidden* count, where `inverse_block_mask` fixes the visible one: at 0.8 of 512 patches, 409 are
    hidden here and 410 there.

    Returns:
        `torch.BoolTensor` of shape `(batch_size, num_patches)`, True = hidden.
    """
    batch_size = _positive_int("batch_size", batch_size)
    num_patches = _positive_int("num_patches", num_patches)
    num_hidden = _floor(num_patches * _ratio("mask_ratio", mask_ratio))
    device = _mask_device(generator, device)
    noise = torch.rand(batch_size, num_patches, generator=generator, device=device)
    return _keep_top_scores(noise, num_patches - num_hidden)


class EATMaskGenerator:
    """Draws the student masks of a batch: `clone_batch` independent masks per clip.

    Reads `mask_strategy`, `mask_ratio`, `mask_prob_adjust`, `mask_block_size` and `clone_batch` from `config` (an
    `EATConfig`, or any object with those attributes) once, and checks them, naming the field at fault. Cheap enough
    for a DataLoader collate function, where pre-training draws its masks so that the training step never waits for
    them.
    """

    def __init__(self, config):
        if config.mask_strategy not in MASK_STRATEGIES:
            raise ValueError(f"mask_strategy must be one of {MASK_STRATEGIES}, got {config.mask_strategy!r}")
        self.mask_strategy = config.mask_strategy
        self.mask_ratio = _ratio("mask_ratio", config.mask_ratio)
        self.mask_prob_adjust = _non_negative("mask_prob_adjust", config.mask_prob_adjust)
        self.mask_block_size = _positive_int("mask_block_size", config.mask_block_size)
        self.clone_batch = _positive_int("clone_batch", config.clone_batch)

    def num_visible(self, num_time_patches: int, num_freq_patches: int) -> int:
        """Visible patches per mask row that `__call__` draws on this grid."""
        num_patches = _grid_size(num_time_patches, num_freq_patches)
        if self.mask_strategy == "random":
            return num_patches - _floor(num_patches * self.mask_ratio)
        return _floor(num_patches * (1.0 - self.mask_ratio))

    def __call__(
        self,
        batch_size: int,
        num_time_patches: int,
        num_freq_patches: int,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """Masks of shape `(batch_size * clone_batch, num_patches)`, True = hidden.

        Rows `b * clone_batch` to `(b + 1) * clone_batch - 1` belong to clip `b`, matching
        `input_values.repeat_interleave(clone_batch, dim=0)`.
        """
        rows = _positive_int("batch_size", batch_size) * self.clone_batch
        if self.mask_strategy == "random":
            num_patches = _grid_size(num_time_patches, num_freq_patches)
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


# ----------------------------------------------------------------------------------------- applying the masks


def mask_order(bool_masked_pos: torch.Tensor) -> torch.Tensor:
    """Patch positions of each row, visible ones first, each part ascending. Every row must hide the same number,
    so `[:, :num_visible]` indexes the visible patches and `[:, num_visible:]` the masked ones."""
    return torch.argsort(bool_masked_pos.to(torch.int8), dim=1, stable=True)


def check_num_visible_patches(bool_masked_pos: torch.Tensor, num_visible_patches: int) -> None:
    """Checks that every row of the mask leaves exactly `num_visible_patches` patches visible, since gathering with
    another count would silently mix masked tokens in or leave visible ones out.

    On the CPU a mismatch raises at once (reading the mask costs no stall there). On an accelerator the check is
    queued on the device with `torch._assert_async`, so the step does not wait for it; a mismatch then surfaces as a
    device-side assertion at the next synchronisation.
    """
    visible_per_row = bool_masked_pos.shape[1] - bool_masked_pos.sum(dim=1)
    # Under torch.compile a read of the mask would split the graph: the queued check serves there too.
    if bool_masked_pos.device.type == "cpu" and not torch.compiler.is_compiling():
        found = sorted(set(visible_per_row.tolist()))
        if found != [num_visible_patches]:
            raise ValueError(
                f"bool_masked_pos leaves {found} patches visible per row, but exactly {num_visible_patches} are "
                "expected (EATForPreTraining derives the count from its config's mask_strategy and mask_ratio): the "
                "masks were drawn with another mask_ratio or config than the model's. Draw them with the model's own "
                "`mask_generator` (or `EATMaskGenerator(model.config)`), or pre-train with a config whose masking "
                "matches the masks."
            )
    else:
        torch._assert_async(
            visible_per_row.eq(num_visible_patches).all(),
            f"bool_masked_pos does not leave exactly {num_visible_patches} visible patches in every row: the masks "
            "were drawn with another mask_ratio or config than the model's",
        )


def drop_masked_tokens(
    tokens: torch.Tensor, bool_masked_pos: torch.Tensor, num_visible_patches: int | None = None
) -> torch.Tensor:
    """Keeps the visible tokens of each row, in their original order. Every row must hide the same number.

    `num_visible_patches` is that number when the caller knows it on the host (masks from `EATMaskGenerator`); it is
    checked against the mask without a device→host read. Without it the count is read from the mask, which makes the
    host wait for the accelerator.
    """
    if num_visible_patches is None:
        num_visible_patches = tokens.shape[1] - int(bool_masked_pos[0].sum())
    else:
        check_num_visible_patches(bool_masked_pos, num_visible_patches)
    visible_index = mask_order(bool_masked_pos)[:, :num_visible_patches]
    if tokens.dim() == 3:
        visible_index = visible_index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
    return torch.gather(tokens, 1, visible_index)


class EATMaskIndex:
    """Where the visible and the hidden patches of every mask row are, worked out once per pre-training step for the
    objectives and their losses (the encoder sorts the mask for itself, to drop the hidden patches).

    Rows are the `clones` masked copies of each clip, clip-major. `order` lists each row's patch positions visible
    first, each part ascending, so `order[:, :num_visible]` are the visible positions (in the order the student's
    tokens come in) and `order[:, num_visible:]` the hidden ones.
    """

    def __init__(self, bool_masked_pos: torch.Tensor, num_clips: int, num_visible: int):
        self.order = mask_order(bool_masked_pos)
        self.num_visible = num_visible
        self.clones = bool_masked_pos.shape[0] // num_clips
        self.clip_of_row = torch.arange(bool_masked_pos.shape[0], device=bool_masked_pos.device).div(
            self.clones, rounding_mode="floor"
        )

    @property
    def hidden(self) -> torch.Tensor:
        return self.order[:, self.num_visible :]

    def hidden_of_rows(self, values: torch.Tensor) -> torch.Tensor:
        """`(rows, patches, dim)` → the hidden positions' `(rows, hidden, dim)`."""
        return torch.gather(values, 1, self.hidden.unsqueeze(-1).expand(-1, -1, values.shape[-1]))

    def hidden_of_clips(self, values: torch.Tensor) -> torch.Tensor:
        """`(clips, patches, dim)` → `(rows, hidden, dim)`: each row reads its own clip's values, so the `clones`
        copies are never materialised."""
        return values[self.clip_of_row.unsqueeze(1), self.hidden]

    def restore(self, visible: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        """Puts the visible tokens `(rows, visible, dim)` back on the full patch grid `fill` `(rows, patches, dim)`,
        the inverse of `drop_masked_tokens`: hidden positions keep `fill`."""
        index = self.order[:, : visible.shape[1]].unsqueeze(-1).expand(-1, -1, visible.shape[-1])
        return fill.scatter(1, index, visible)


__all__ = [
    "MASK_STRATEGIES",
    "EATMaskGenerator",
    "EATMaskIndex",
    "drop_masked_tokens",
    "inverse_block_mask",
    "random_mask",
]
