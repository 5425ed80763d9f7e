"""Figures of `modeling_eat.plotting`, checked on the written PNG pixels."""

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from modeling_eat import EATConfig, EATMaskGenerator
from modeling_eat.plotting import (
    MASK_COLOR,
    check_replaceable_figure,
    confusion_matrix,
    is_own_figure,
    main,
    plot_average_precision,
    plot_confusion_matrix,
    plot_spectrogram_with_mask,
    rank_average_precision,
)


def masked_fraction_of_spectrogram(image: np.ndarray) -> float:
    """Pixels of the masked-patch grey over those plus the viridis pixels (chroma >= 0.27) of the spectrogram."""
    rgb = image[..., :3]
    is_mask_grey = np.all(np.abs(rgb - np.array(MASK_COLOR)) < 2.5 / 255, axis=-1)
    is_spectrogram = rgb.max(axis=-1) - rgb.min(axis=-1) > 0.2
    return is_mask_grey.sum() / (is_mask_grey.sum() + is_spectrogram.sum())


@pytest.mark.parametrize("strategy, mask_ratio", [("inverse_block", 0.8), ("random", 0.3)])
def test_mask_overlay_shades_the_masked_area(tmp_path, strategy, mask_ratio):
    config = EATConfig.from_preset("tiny", mask_strategy=strategy, mask_ratio=mask_ratio)
    masks = EATMaskGenerator(config)(1, 64, 8, generator=torch.Generator().manual_seed(0))
    spectrogram = np.random.default_rng(0).standard_normal((1024, 128)).astype(np.float32)
    path = plot_spectrogram_with_mask(
        spectrogram, masks[0], 16, tmp_path / "mask.png", show_input=False, figsize=(8, 3), dpi=100
    )
    image = imread(path)
    assert image.shape == (300, 800, 4)
    true_ratio = float(masks[0].float().mean())
    # White outlines of the visible patches take a few of their pixels, hence the tolerance.
    assert masked_fraction_of_spectrogram(image) == pytest.approx(true_ratio, abs=0.04)


def test_mask_overlay_with_input_panel_and_bad_shapes(tmp_path):
    mask = torch.zeros(4 * 8, dtype=torch.bool)
    mask[::3] = True
    path = plot_spectrogram_with_mask(torch.randn(64, 128), mask, 16, tmp_path / "both.png", title="clip")
    assert imread(path).shape == (560, 1000, 4)  # default 10 x (2 x 2.8) inches at 100 dpi
    with pytest.raises(ValueError, match="bool_masked_pos has 31"):
        plot_spectrogram_with_mask(torch.randn(64, 128), mask[:31], 16, tmp_path / "bad.png")


def test_confusion_matrix_values_and_png(tmp_path):
    y_true = ["a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "b", "b", "b", "a", "c"]
    expected_counts = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, ["a", "b", "c"], normalize=False), expected_counts)
    np.testing.assert_allclose(
        confusion_matrix(y_true, y_pred, ["a", "b", "c"]), [[0.5, 0.5, 0], [0, 1, 0], [0.5, 0, 0.5]]
    )
    with pytest.raises(ValueError, match=r"labels \['c'\] occur"):
        confusion_matrix(y_true, y_pred, ["a", "b"])

    path = plot_confusion_matrix(y_true, y_pred, ["a", "b", "c"], tmp_path / "cm.png", figsize=(5, 4), dpi=80)
    image = imread(path)
    assert image.shape == (320, 400, 4)
    # The darkest Blues cell (the 1.0 of label b) is there: a deep blue, unlike anything else on the figure.
    rgb = image[..., :3]
    assert np.any((rgb[..., 2] > 0.35) & (rgb[..., 0] < 0.1) & (rgb[..., 1] < 0.3))


def test_average_precision_ranking_and_png(tmp_path):
    ap = np.array([0.2, np.nan, 0.9, 0.5, 0.1])
    labels = ["dog", "cat", "siren", "rain", "car"]
    mean_ap, num_classes, ranked = rank_average_precision(ap, labels, top_n=3)
    assert mean_ap == pytest.approx((0.2 + 0.9 + 0.5 + 0.1) / 4)
    assert num_classes == 4
    assert ranked == [("siren", 0.9), ("rain", 0.5), ("dog", 0.2)]
    assert rank_average_precision(dict(zip(labels, ap)), top_n=2)[2] == [("siren", 0.9), ("rain", 0.5)]
    with pytest.raises(ValueError, match="4 labels for 5"):
        rank_average_precision(ap, labels[:4])

    path = plot_average_precision(ap, labels, tmp_path / "ap.png", top_n=3, figsize=(6, 3), dpi=100)
    image = imread(path)
    assert image.shape == (300, 600, 4)
    # Three bars of matplotlib's tab:blue.
    is_bar = np.all(np.abs(image[..., :3] - np.array([0.122, 0.467, 0.706])) < 0.01, axis=-1)
    assert is_bar.mean() > 0.05


def test_mask_command_on_a_real_clip(tmp_path, fsdd_dir):
    audio = sorted((fsdd_dir / "test").glob("*.wav"))[0]
    output = main(["mask", "--config_name", "tiny", "--audio", str(audio), "--output", str(tmp_path / "mask.png")])
    image = imread(output)
    assert image.shape == (560, 1000, 4)
    assert masked_fraction_of_spectrogram(image[280:]) > 0.5  # EAT masks 80% of the student's patches


def test_a_rerun_replaces_its_own_figures_and_no_other_file(tmp_path, fsdd_dir):
    own = plot_confusion_matrix(["a", "b"], ["a", "a"], ["a", "b"], tmp_path / "cm.png", dpi=40)
    check_replaceable_figure(own, "--confusion_matrix")  # an earlier figure of ours: replaceable
    check_replaceable_figure(tmp_path / "new.png", "--confusion_matrix")  # nothing there yet
    # A PNG of someone else's (matplotlib's own mark) and a text file are the user's.
    foreign = plot_confusion_matrix(["a"], ["a"], ["a"], tmp_path / "photo.png", dpi=40)
    foreign.write_bytes(foreign.read_bytes().replace(b"Software\x00modeling_eat", b"Software\x00matplotlibX"))
    notes = tmp_path / "notes.png"
    notes.write_text("my notes")
    assert is_own_figure(own)
    for path in (foreign, notes):
        before = path.read_bytes()
        assert not is_own_figure(path)
        with pytest.raises(ValueError) as error:
            check_replaceable_figure(path, "--confusion_matrix")
        assert str(error.value) == (
            f"--confusion_matrix {path} exists and is no figure of this package's, which are all a rerun replaces: "
            "choose another file."
        )
        assert path.read_bytes() == before
    audio = sorted((fsdd_dir / "test").glob("*.wav"))[0]
    with pytest.raises(SystemExit) as error:
        main(["mask", "--config_name", "tiny", "--audio", str(audio), "--output", str(notes)])
    assert error.value.code == 2 and notes.read_text() == "my notes"
