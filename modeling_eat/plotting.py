"""Figures for EAT: a spectrogram under a pre-training mask, a confusion matrix, per-class average precision.

Figures are drawn on `matplotlib.figure.Figure` objects and written as PNG through the Agg canvas, without pyplot, so
importing this module never changes the matplotlib backend of a notebook or GUI session. Every figure is exactly
`figsize * dpi` pixels (no tight bounding box).

    python -m modeling_eat.plotting mask --config_name tiny --audio clip.wav --output mask.png
"""

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import NullLocator

from .audio import decode_audio
from .configuration_eat import EATConfig
from .feature_extraction_eat import (
    EATFeatureExtractor,
    frames_to_seconds,
    kaldi_num_frames,
    patch_aligned,
    seconds_to_frames,
)
from .masking_eat import EATMaskGenerator
from .outputs import check_replaceable
from .runtime import CommandError


# The masked-patch fill: a neutral grey, which no pixel of the viridis spectrogram (chroma >= 0.27) can be.
MASK_COLOR = (0.6, 0.6, 0.6)
VISIBLE_EDGE_COLOR = "white"
SPECTROGRAM_COLORMAP = "viridis"


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy() if values.is_floating_point() else values.cpu().numpy()
    return np.asarray(values)


# Every figure carries this PNG text chunk, so that a rerun can tell its own earlier figure (which it may replace) from
# a file of the user's at the same path (which it must not).
FIGURE_MARK = ("Software", "modeling_eat")


def _save(figure: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata=dict([FIGURE_MARK]))
    return path


def is_own_figure(path) -> bool:
    """Whether `path` is a PNG this module wrote."""
    key, value = FIGURE_MARK
    try:
        with open(path, "rb") as file:
            head = file.read(4096)  # matplotlib writes its text chunks before the image data
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and b"tEXt" + key.encode() + b"\x00" + value.encode() in head


def check_replaceable_figure(path, option: str) -> None:
    """Refuses, before any work, a figure path that holds a file this module did not write."""
    check_replaceable(
        path, is_own_figure,
        f"{option} {path} exists and is no figure of this package's, which are all a rerun replaces: choose another "
        "file.",
    )


def _draw_spectrogram(axes, spectrogram: np.ndarray, num_valid_frames: int):
    num_frames, num_mel_bins = spectrogram.shape
    seconds = frames_to_seconds(num_frames)
    # Colours span the real frames only: EAT's padding value (0 before normalization) is often the loudest "sound".
    valid = spectrogram[:num_valid_frames]
    axes.imshow(
        spectrogram.T,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        cmap=SPECTROGRAM_COLORMAP,
        vmin=float(valid.min()),
        vmax=float(valid.max()),
        extent=(0.0, seconds, 0.0, num_mel_bins),
    )
    axes.set_ylabel("mel bin")
    axes.set_xlim(0.0, seconds)
    axes.set_ylim(0.0, num_mel_bins)


def _mark_padding(axes, num_valid_frames: int, num_frames: int) -> None:
    if num_valid_frames < num_frames:
        axes.axvspan(
            frames_to_seconds(num_valid_frames), frames_to_seconds(num_frames),
            facecolor="white", alpha=0.75, hatch="//", edgecolor="0.4", linewidth=0,
        )


def plot_spectrogram_with_mask(
    input_values,
    bool_masked_pos,
    patch_size: int,
    path,
    title: str | None = None,
    show_input: bool = True,
    num_valid_frames: int | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Spectrogram (time in seconds on x, mel bin on y) as the student sees it under one clone's mask.

    Masked patches are filled with flat grey (the student never sees them) and visible patches are outlined in white;
    the title gives the mask ratio. With `show_input`, the unmasked spectrogram is drawn above for reference. Frames
    from `num_valid_frames` on (the feature extractor's padding) are hatched over.

    Args:
        input_values: normalized fbank `[num_frames, num_mel_bins]` (one clip of `EATFeatureExtractor` output).
        bool_masked_pos: `[num_patches]` bool, True = masked, patch index `t * num_freq_patches + f`.
        patch_size: patch side in frames and mel bins (16 for EAT).
        path: PNG to write.
        figsize: inches; defaults to 10 wide and 2.8 per panel.
    """
    spectrogram = _as_numpy(input_values).astype(np.float32)
    mask = _as_numpy(bool_masked_pos).astype(bool)
    if spectrogram.ndim == 3 and spectrogram.shape[0] == 1:
        spectrogram = spectrogram[0]
    if mask.ndim == 2 and mask.shape[0] == 1:
        mask = mask[0]
    if spectrogram.ndim != 2 or mask.ndim != 1:
        raise ValueError(
            f"expected one clip: input_values [frames, mel] and bool_masked_pos [patches], got shapes "
            f"{spectrogram.shape} and {mask.shape}; index a batch first, e.g. input_values[0], bool_masked_pos[0]"
        )
    num_frames, num_mel_bins = spectrogram.shape
    num_time_patches, num_freq_patches = num_frames // patch_size, num_mel_bins // patch_size
    if num_frames % patch_size or num_mel_bins % patch_size or mask.size != num_time_patches * num_freq_patches:
        raise ValueError(
            f"a {num_frames} x {num_mel_bins} spectrogram in {patch_size}x{patch_size} patches has "
            f"{num_time_patches * num_freq_patches} patches, but bool_masked_pos has {mask.size}: pass the mask "
            "drawn for this spectrogram (frames and mel bins must be multiples of patch_size)"
        )
    if num_valid_frames is None:
        num_valid_frames = num_frames
    if not 0 < num_valid_frames <= num_frames:
        raise ValueError(f"num_valid_frames must lie in [1, {num_frames}], got {num_valid_frames}")
    grid = mask.reshape(num_time_patches, num_freq_patches)
    patch_seconds = frames_to_seconds(patch_size)

    num_panels = 2 if show_input else 1
    figure = Figure(figsize=figsize or (10.0, 2.8 * num_panels), dpi=dpi, layout="constrained")
    panels = figure.subplots(num_panels, 1, sharex=True, squeeze=False)[:, 0]
    for axes in panels:
        _draw_spectrogram(axes, spectrogram, num_valid_frames)
    if show_input:
        panels[0].set_title("input (what the teacher sees)", fontsize=10)
    student = panels[-1]

    def rectangles(time_index, freq_index):
        return [
            Rectangle((t * patch_seconds, f * patch_size), patch_seconds, patch_size)
            for t, f in zip(time_index, freq_index)
        ]

    # Antialiasing off: masked pixels come out exactly MASK_COLOR and neighbouring patches meet without seams.
    student.add_collection(
        PatchCollection(rectangles(*np.nonzero(grid)), facecolor=MASK_COLOR, edgecolor="none", antialiased=False)
    )
    student.add_collection(
        PatchCollection(
            rectangles(*np.nonzero(~grid)), facecolor="none", edgecolor=VISIBLE_EDGE_COLOR, linewidth=0.8
        )
    )
    for axes in panels:
        _mark_padding(axes, num_valid_frames, num_frames)
    student.set_xlabel("time (s)")
    num_masked = int(mask.sum())
    ratio_text = f"mask ratio {num_masked / mask.size:.2f}: {num_masked} of {mask.size} patches masked"
    student.set_title(f"student view, {ratio_text}", fontsize=10)
    handles = [
        Patch(facecolor=MASK_COLOR, edgecolor="none", label="masked"),
        Patch(facecolor="none", edgecolor=VISIBLE_EDGE_COLOR, label="visible"),
    ]
    if num_valid_frames < num_frames:
        handles.append(Patch(facecolor="white", edgecolor="0.4", hatch="//", label="padding"))
    student.legend(
        handles=handles,
        loc="upper right",
        facecolor="0.25",
        labelcolor="white",
        framealpha=0.9,
        fontsize=8,
    )
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def confusion_matrix(y_true, y_pred, labels: Sequence, normalize: bool = True) -> np.ndarray:
    """`[len(labels), len(labels)]` counts (rows: true, columns: predicted), or row fractions if `normalize`."""
    index = {label: position for position, label in enumerate(labels)}
    unknown = sorted({str(label) for label in list(y_true) + list(y_pred) if label not in index})
    if unknown:
        raise ValueError(f"labels {unknown} occur in y_true/y_pred but not in `labels`: add them")
    matrix = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for true, predicted in zip(y_true, y_pred):
        matrix[index[true], index[predicted]] += 1
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    return matrix


def plot_confusion_matrix(
    y_true,
    y_pred,
    labels: Sequence,
    path,
    normalize: bool = True,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Confusion matrix (rows: true label, columns: predicted), row-normalized by default, accuracy in the title.

    Cells are annotated when there are at most 25 labels. `figsize` defaults to a square growing with the labels.
    """
    y_true, y_pred = list(_as_numpy(y_true)), list(_as_numpy(y_pred))
    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(
            f"need as many predictions as true labels (at least one), got {len(y_true)} and {len(y_pred)}"
        )
    matrix = confusion_matrix(y_true, y_pred, labels, normalize)
    accuracy = float(np.mean([true == predicted for true, predicted in zip(y_true, y_pred)]))
    num_labels = len(labels)
    side = max(4.5, 0.45 * num_labels + 2.5)
    figure = Figure(figsize=figsize or (side + 1.0, side), dpi=dpi, layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8, label="fraction of the true label" if normalize else "clips")
    ticks = np.arange(num_labels)
    names = [str(label) for label in labels]
    axes.set_xticks(ticks, names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right", rotation_mode="anchor")
    axes.set_yticks(ticks, names)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if num_labels <= 25:
        threshold = 0.5 * (matrix.max() if matrix.max() > 0 else 1.0)
        for row in range(num_labels):
            for column in range(num_labels):
                value = matrix[row, column]
                if value == 0:
                    continue  # blank cells keep the errors that do occur readable
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                axes.text(
                    column, row, text, ha="center", va="center", fontsize=8,
                    color="white" if value > threshold else "black",
                )
    heading = f"accuracy {accuracy:.3f} ({len(y_true)} clips)"
    axes.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    return _save(figure, path)


def rank_average_precision(
    ap_per_class: Mapping | Sequence | np.ndarray, labels: Sequence | None = None, top_n: int | None = 30
) -> tuple[float, int, list[tuple[str, float]]]:
    """mAP over the classes with a finite AP (NaN = no positive example), their count, and the `top_n` best.

    Returns `(mean_ap, num_classes, [(label, AP), ...])`, the list sorted by decreasing AP.
    """
    if isinstance(ap_per_class, Mapping):
        if labels is not None:
            ap_per_class = {label: ap_per_class[label] for label in labels}
        names, values = list(map(str, ap_per_class)), np.asarray(list(ap_per_class.values()), dtype=np.float64)
    else:
        values = _as_numpy(ap_per_class).astype(np.float64).reshape(-1)
        names = [str(label) for label in labels] if labels is not None else [str(i) for i in range(values.size)]
        if len(names) != values.size:
            raise ValueError(f"got {len(names)} labels for {values.size} average precisions")
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError("no class has a finite average precision (every value is NaN)")
    mean_ap = float(values[finite].mean())
    order = sorted(np.nonzero(finite)[0], key=lambda index: -values[index])
    return mean_ap, int(finite.sum()), [(names[index], float(values[index])) for index in order[:top_n]]


def plot_average_precision(
    ap_per_class,
    labels: Sequence | None,
    path,
    top_n: int = 30,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Horizontal bars of the `top_n` best per-class APs, best on top; the mAP over all (finite) classes in the title.

    `ap_per_class` is a `{label: AP}` mapping or an array aligned with `labels`.
    """
    mean_ap, num_classes, ranked = rank_average_precision(ap_per_class, labels, top_n)
    names = [name for name, _ in ranked][::-1]
    values = [value for _, value in ranked][::-1]
    figure = Figure(figsize=figsize or (8.0, 1.2 + 0.28 * len(ranked)), dpi=dpi, layout="constrained")
    axes = figure.subplots()
    bars = axes.barh(np.arange(len(ranked)), values, color="tab:blue", height=0.7)
    axes.bar_label(bars, labels=[f"{value:.3f}" for value in values], padding=3, fontsize=8)
    axes.set_yticks(np.arange(len(ranked)), names, fontsize=9)
    axes.set_xlim(0.0, 1.1)
    axes.set_ylim(-0.6, len(ranked) - 0.4)
    axes.set_xlabel("average precision")
    axes.axvline(mean_ap, color="tab:red", linestyle="--", linewidth=1, label=f"mAP {mean_ap:.3f}")
    axes.legend(loc="lower right", fontsize=8)
    heading = f"mAP {mean_ap:.3f} over {num_classes} classes"
    if len(ranked) < num_classes:
        heading += f" (top {len(ranked)} shown)"
    axes.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def plot_grouped_bars(
    groups: Mapping[str, Mapping[str, tuple[float, float]]],
    path,
    ylabel: str,
    title: str | None = None,
    reference: float | None = None,
    reference_label: str = "",
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Bars of `mean` with `std` error bars: one cluster per group (e.g. a study's rows), one bar per series (its
    metrics), values written above the bars; `reference` (e.g. chance) as a dashed line."""
    series = list(dict.fromkeys(name for values in groups.values() for name in values))
    if not series:
        raise ValueError("nothing to plot: every group is empty")
    width = 0.8 / len(series)
    figure = Figure(figsize=figsize or (max(6.0, 1.3 * len(groups) + 2.0), 4.2), dpi=dpi, layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(groups))
    for index, name in enumerate(series):
        means = [groups[group].get(name, (np.nan, 0.0))[0] for group in groups]
        stds = [groups[group].get(name, (np.nan, 0.0))[1] for group in groups]
        bars = axes.bar(positions + (index - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
                        label=name)
        axes.bar_label(bars, labels=["" if np.isnan(m) else f"{m:.2f}" for m in means], padding=2, fontsize=7)
    if reference is not None:
        axes.axhline(reference, color="0.4", linestyle="--", linewidth=1, label=reference_label or None)
    axes.set_xticks(positions, list(groups), rotation=20, ha="right", rotation_mode="anchor")
    axes.set_ylabel(ylabel)
    axes.set_ylim(0.0, 1.0)
    # Above the axes, where no bar can be hidden behind it.
    axes.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(series) + 1, frameon=False)
    axes.grid(axis="y", alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def plot_learning_curves(
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, float, float]]]],
    path,
    xlabel: str,
    ylabel: str,
    columns: int = 3,
    title: str | None = None,
    reference: float | None = 0.0,
    dpi: int = 100,
) -> Path:
    """One panel per entry of `panels`, each with lines of `(x, mean, std)` points (a shaded band of ± std) on a
    logarithmic x axis, e.g. a gain against training length; `reference` as a dashed line (none when None). Panels
    share the y axis, so that their values compare at a glance."""
    if not any(lines for lines in panels.values()):
        raise ValueError("nothing to plot: every panel is empty")
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.0 * columns, 3.2 * rows + 0.6), dpi=dpi, layout="constrained")
    grid = np.atleast_2d(figure.subplots(rows, columns, sharey=True, squeeze=False))
    labels = list(dict.fromkeys(label for lines in panels.values() for label in lines))
    colors = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    for axes, (panel, lines) in zip(grid.flat, panels.items()):
        for label, points in lines.items():
            x, mean, std = (np.asarray(values, dtype=float) for values in zip(*sorted(points)))
            axes.plot(x, mean, marker="o", markersize=3, color=colors[label], label=label)
            axes.fill_between(x, mean - std, mean + std, color=colors[label], alpha=0.15, linewidth=0)
        if reference is not None:
            axes.axhline(reference, color="0.4", linestyle="--", linewidth=1)
        axes.set_xscale("log")
        # The measured x values as the ticks, written out (500, 1,000, ...), not as powers of ten.
        ticks = sorted({x for points in lines.values() for x, _, _ in points})
        axes.set_xticks(ticks, [f"{tick:,.0f}" for tick in ticks], fontsize=7)
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set_title(panel, fontsize=9)
        axes.set_xlabel(xlabel, fontsize=8)
        axes.grid(alpha=0.3)
    for axes in grid[:, 0]:
        axes.set_ylabel(ylabel, fontsize=8)
    for axes in list(grid.flat)[len(panels):]:
        axes.set_visible(False)
    handles = [Line2D([], [], color=colors[label], marker="o", markersize=3) for label in labels]
    figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, path)


# ------------------------------------------------------------------------------------------------------------ command


def mask_figure_from_audio(
    audio_path, config, output, clone: int = 0, seed: int = 0, max_seconds: float | None = None
) -> Path:
    """Draws a real `EATMaskGenerator` mask over the AudioSet-normalized fbank of an audio file."""
    feature_extractor = EATFeatureExtractor.from_preset("audioset")
    waveform = decode_audio(str(audio_path), feature_extractor.sampling_rate)
    patch_size = config.patch_size
    limit = config.max_length if max_seconds is None else seconds_to_frames(max_seconds)
    num_valid_frames = min(kaldi_num_frames(waveform.shape[0], feature_extractor.sampling_rate), limit)
    num_frames = patch_aligned(num_valid_frames, patch_size, round_up=True)
    features = feature_extractor(
        waveform, sampling_rate=feature_extractor.sampling_rate, max_length=num_frames, truncation=True,
        return_tensors="pt",
    )
    mask_generator = EATMaskGenerator(config)
    if not 0 <= clone < mask_generator.clone_batch:
        raise ValueError(f"--clone {clone} does not exist: the config draws {mask_generator.clone_batch} clones")
    masks = mask_generator(
        1, num_frames // patch_size, config.num_freq_patches, generator=torch.Generator().manual_seed(seed)
    )
    title = (
        f"{Path(audio_path).name}: {config.mask_strategy} mask, clone {clone} of {mask_generator.clone_batch} "
        f"(seed {seed})"
    )
    return plot_spectrogram_with_mask(
        features["input_values"][0], masks[clone], patch_size, output, title=title, num_valid_frames=num_valid_frames
    )


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Figures for EAT.")
    commands = parser.add_subparsers(dest="command", required=True)
    mask = commands.add_parser("mask", help="a pre-training mask drawn over a clip's spectrogram")
    mask.add_argument(
        "--config_name", default="base", help="size preset (tiny/small/base/large), a config JSON or a model folder"
    )
    mask.add_argument("--audio", required=True, help="audio file (wav/flac/ogg, or anything FFmpeg reads)")
    mask.add_argument("--output", required=True, help="PNG to write")
    mask.add_argument("--clone", type=int, default=0, help="which of the clip's clone masks to draw")
    mask.add_argument("--seed", type=int, default=0)
    mask.add_argument("--max_seconds", type=float, default=None, help="crop; defaults to config.max_length frames")
    args = parser.parse_args(argv)
    try:
        check_replaceable_figure(args.output, "--output")
    except CommandError as error:
        parser.error(str(error))
    config = EATConfig.from_name_or_path(args.config_name)
    output = mask_figure_from_audio(args.audio, config, args.output, args.clone, args.seed, args.max_seconds)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main()
