"""Tests for modeling_eat/masking_eat.py (EAT's inverse block multi-mask, EAT.md §3; MaskSpec's random mask)."""

from types import SimpleNamespace

import pytest
import torch

from modeling_eat.masking_eat import EATMaskGenerator, inverse_block_mask, random_mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def visible_run_lengths(mask: torch.Tensor, num_time_patches: int, num_freq_patches: int) -> torch.Tensor:
    """Mean length of the runs of visible patches along time, per mask row: `visible patches / runs` over all
    frequency columns (0 for a row with nothing visible). A blockiness statistic: inverse block masks make long runs,
    uniform random ones runs of about `1 / mask_ratio`."""
    if mask.dim() != 2 or mask.shape[1] != num_time_patches * num_freq_patches:
        raise ValueError(f"mask must have {num_time_patches * num_freq_patches} columns, got {tuple(mask.shape)}")
    visible = ~mask.bool().view(mask.shape[0], num_time_patches, num_freq_patches)
    starts = visible.clone()
    starts[:, 1:] &= ~visible[:, :-1]
    num_visible = visible.sum(dim=(1, 2)).float()
    num_runs = starts.sum(dim=(1, 2)).float()
    return torch.where(num_runs > 0, num_visible / num_runs.clamp(min=1), torch.zeros_like(num_visible))


def _config(**overrides):
    # Only the attribute names EATMaskGenerator is documented to read.
    values = dict(
        mask_strategy="inverse_block",
        mask_ratio=0.8,
        mask_prob_adjust=0.07,
        mask_block_size=5,
        clone_batch=16,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    "num_time, num_freq, ratio, adjust, expected_visible",
    [
        (64, 8, 0.8, 0.07, 102),  # Base pre-training: 512 patches, 410 masked
        (64, 8, 0.75, 0.1, 128),  # Large pre-training: 384 masked
        (8, 8, 0.8, 0.07, 12),
        (16, 8, 0.8, 0.07, 25),
        (5, 8, 0.8, 0.07, 8),  # int(40*0.27/25) = 0 centres: falls back to uniform keep
        (32, 8, 0.8, 0.07, 51),  # 512 frames (ESC-50 length)
        (7, 3, 0.6, 0.07, 8),  # odd grid narrower than the block
    ],
)
def test_visible_count_exact_for_every_row(num_time, num_freq, ratio, adjust, expected_visible):
    n = num_time * num_freq
    generator = EATMaskGenerator(_config(mask_ratio=ratio, mask_prob_adjust=adjust))
    assert generator.num_visible(num_time, num_freq) == expected_visible == int(n * (1 - ratio) + 1e-6)
    mask = inverse_block_mask(
        512, num_time, num_freq, mask_ratio=ratio, mask_prob_adjust=adjust, generator=_gen(0)
    )
    assert mask.dtype == torch.bool
    assert mask.shape == (512, n)
    visible = (~mask).sum(dim=1)
    assert torch.all(visible == expected_visible), visible.unique()


def test_float_roundoff_does_not_drop_a_patch():
    # 10 * (1 - 0.9) == 0.9999999999999998 in floating point; the count must still be 1.
    assert EATMaskGenerator(_config(mask_ratio=0.9)).num_visible(5, 2) == 1
    mask = inverse_block_mask(64, 5, 2, mask_ratio=0.9, generator=_gen(0))
    assert torch.all((~mask).sum(1) == 1)


def test_mean_mask_ratio():
    mask = inverse_block_mask(2000, 64, 8, generator=_gen(1))
    ratio = mask.float().mean().item()
    # 410 / 512 = 0.80078 exactly, since every row has the same count.
    assert abs(ratio - 0.80) <= 0.01, ratio


def test_random_mask_count_exact():
    mask = random_mask(1000, 512, 0.8, generator=_gen(2))
    assert mask.dtype == torch.bool and mask.shape == (1000, 512)
    assert torch.all(mask.sum(1) == int(512 * 0.8))  # 409 masked, 103 visible
    # Roughly uniform over positions: each patch masked about 80% of the time.
    per_patch = mask.float().mean(0)
    assert per_patch.min() > 0.7 and per_patch.max() < 0.9
    odd = random_mask(7, 40, 0.75, generator=_gen(2))
    assert torch.all(odd.sum(1) == 30)


# --------------------------------------------------------------------------- block structure


def test_blockiness_vs_random():
    # Measured on 1000 masks, 64 x 8 grid, ratio 0.8 (seeds 3 and 4):
    #   inverse block mask: mean visible run length along time ~= 4.08
    #   random mask:        mean visible run length along time ~= 1.25  (~1 / 0.8)
    block = inverse_block_mask(1000, 64, 8, generator=_gen(3))
    rand = random_mask(1000, 512, 0.8, generator=_gen(4))
    block_run = visible_run_lengths(block, 64, 8).mean().item()
    rand_run = visible_run_lengths(rand, 64, 8).mean().item()
    assert 3.5 < block_run < 4.7, block_run
    assert 1.15 < rand_run < 1.35, rand_run
    assert block_run >= 1.5 * rand_run


def test_visible_run_lengths_on_known_masks():
    # 4 x 2 grid; column 0 visible at t=0,1,3 (runs 2 and 1), column 1 visible at t=2 (run 1).
    visible = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=torch.bool)
    mask = (~visible).reshape(1, 8)
    assert visible_run_lengths(mask, 4, 2).tolist() == pytest.approx([4 / 3])
    all_masked = torch.ones(1, 8, dtype=torch.bool)
    assert visible_run_lengths(all_masked, 4, 2).tolist() == [0.0]
    with pytest.raises(ValueError, match="mask"):
        visible_run_lengths(mask, 3, 2)


def test_single_block_is_clamped_not_wrapped():
    # 20 x 20 grid, n_keep = int(400 * 0.0225) = 9 and int(400 * (0.0225 + 0.05) / 25) = 1 centre.
    # A clamped 5 x 5 block holds at least 9 patches (3 x 3 in a corner), so every visible patch
    # comes from the one block and must fit in a 5 x 5 bounding box; wrapping around an edge
    # would spread them across the grid.
    mask = inverse_block_mask(2000, 20, 20, mask_ratio=0.9775, mask_prob_adjust=0.05, generator=_gen(5))
    assert torch.all((~mask).sum(1) == 9)
    vis = (~mask).view(-1, 20, 20)
    idx = torch.arange(20)
    rows_used = vis.any(dim=2)
    cols_used = vis.any(dim=1)
    big = torch.full((1,), 10**6)
    t_span = torch.where(rows_used, idx, -big).amax(1) - torch.where(rows_used, idx, big).amin(1)
    f_span = torch.where(cols_used, idx, -big).amax(1) - torch.where(cols_used, idx, big).amin(1)
    assert int(t_span.max()) <= 4 and int(f_span.max()) <= 4
    # Edge blocks occur and keep their in-grid part: some masks touch row 0 and column 19.
    assert bool(vis[:, 0, :].any()) and bool(vis[:, :, 19].any())


def test_even_block_size_and_block_wider_than_grid():
    # Even block (offsets -2..+1) and a block wider than the 3 frequency columns both work.
    for block_size, grid in ((4, (16, 8)), (5, (10, 3)), (1, (16, 8))):
        mask = inverse_block_mask(64, *grid, block_size=block_size, generator=_gen(6))
        expected = int(grid[0] * grid[1] * 0.2 + 1e-6)
        assert torch.all((~mask).sum(1) == expected)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_masks_different_seed_differs():
    a = inverse_block_mask(32, 64, 8, generator=_gen(7))
    b = inverse_block_mask(32, 64, 8, generator=_gen(7))
    c = inverse_block_mask(32, 64, 8, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    ra = random_mask(32, 512, 0.8, generator=_gen(7))
    rb = random_mask(32, 512, 0.8, generator=_gen(7))
    rc = random_mask(32, 512, 0.8, generator=_gen(8))
    assert torch.equal(ra, rb) and not torch.equal(ra, rc)


def test_rows_in_one_call_are_independent():
    mask = inverse_block_mask(64, 64, 8, generator=_gen(9))
    assert torch.unique(mask, dim=0).shape[0] == 64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generator_and_device():
    g = torch.Generator(device="cuda").manual_seed(0)
    mask = inverse_block_mask(16, 64, 8, generator=g)  # device defaults to the generator's
    assert mask.is_cuda and torch.all((~mask).sum(1) == 102)
    g2 = torch.Generator(device="cuda").manual_seed(0)
    assert torch.equal(mask, inverse_block_mask(16, 64, 8, generator=g2, device="cuda"))
    assert random_mask(4, 512, 0.8, device="cuda").is_cuda


# --------------------------------------------------------------------------- EATMaskGenerator


def test_mask_generator_shape_and_clip_major_layout():
    gen = EATMaskGenerator(_config())
    out = gen(12, 64, 8, generator=_gen(10))
    assert out.dtype == torch.bool and out.shape == (12 * 16, 512)
    assert torch.all((~out).sum(1) == 102) and gen.num_visible(64, 8) == 102
    # Rows are drawn in one batched call, clip-major: rows b*16 .. b*16+15 are clip b's clones.
    assert torch.equal(out, inverse_block_mask(12 * 16, 64, 8, generator=_gen(10)))
    per_clip = out.view(12, 16, 512)
    for clones in per_clip:
        assert torch.unique(clones, dim=0).shape[0] == 16  # the 16 clones of a clip all differ


def test_mask_generator_large_and_random_strategy():
    large = EATMaskGenerator(_config(mask_ratio=0.75, mask_prob_adjust=0.1, clone_batch=2))
    out = large(3, 64, 8, generator=_gen(11))
    assert out.shape == (6, 512) and torch.all((~out).sum(1) == 128)

    rnd = EATMaskGenerator(_config(mask_strategy="random", clone_batch=4))
    out = rnd(5, 64, 8, generator=_gen(12))
    assert out.shape == (20, 512)
    assert torch.all(out.sum(1) == 409) and rnd.num_visible(64, 8) == 103


# --------------------------------------------------------------------------- validation


INVERSE_BLOCK_ARGUMENTS = dict(batch_size=2, num_time_patches=64, num_freq_patches=8)
RANDOM_MASK_ARGUMENTS = dict(batch_size=2, num_patches=512, mask_ratio=0.8)


@pytest.mark.parametrize(
    "mask_function, arguments, bad, name",
    [
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(mask_ratio=0.0), "mask_ratio"),
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(mask_ratio=1.0), "mask_ratio"),
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(mask_ratio=-0.2), "mask_ratio"),
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(mask_ratio="high"), "mask_ratio"),
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(block_size=0), "block_size"),
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(block_size=2.5), "block_size"),
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(mask_prob_adjust=-0.1), "mask_prob_adjust"),
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(num_time_patches=0), "num_time_patches"),
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(num_freq_patches=-1), "num_freq_patches"),
        (inverse_block_mask, INVERSE_BLOCK_ARGUMENTS, dict(batch_size=0), "batch_size"),
        (random_mask, RANDOM_MASK_ARGUMENTS, dict(mask_ratio=1.5), "mask_ratio"),
        (random_mask, RANDOM_MASK_ARGUMENTS, dict(num_patches=0), "num_patches"),
        (random_mask, RANDOM_MASK_ARGUMENTS, dict(batch_size=-3), "batch_size"),
    ],
)
def test_mask_functions_name_the_bad_argument(mask_function, arguments, bad, name):
    with pytest.raises(ValueError, match=name):
        mask_function(**{**arguments, **bad})


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(mask_strategy="block"), "mask_strategy"),
        (dict(mask_ratio=1.0), "mask_ratio"),
        (dict(mask_prob_adjust=-1.0), "mask_prob_adjust"),
        (dict(mask_block_size=0), "mask_block_size"),
        (dict(clone_batch=0), "clone_batch"),
    ],
)
def test_mask_generator_bad_config(overrides, name):
    with pytest.raises(ValueError, match=name):
        EATMaskGenerator(_config(**overrides))


def test_on_a_one_second_grid_the_inverse_block_mask_has_no_block():
    # 1 s clips give 6 x 8 patches: int(48 * (0.2 + 0.07) / 25) = 0 block centres, so the visible patches are drawn
    # uniformly, like a random mask's; a 10 s grid (64 x 8) has 5 centres and runs 3x longer (FIDELITY.md).
    short_block = inverse_block_mask(2000, 6, 8, generator=_gen(13))
    short_random = random_mask(2000, 48, 0.8, generator=_gen(14))
    assert abs(visible_run_lengths(short_block, 6, 8).mean() - visible_run_lengths(short_random, 6, 8).mean()) < 0.1
    long_block = inverse_block_mask(2000, 64, 8, generator=_gen(13))
    assert visible_run_lengths(long_block, 64, 8).mean() > 3 * visible_run_lengths(short_block, 6, 8).mean()
