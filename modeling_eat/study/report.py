"""The study's results: every row and seed as measured, their mean ± standard deviation over the seeds, the gap of
each row to the random-init encoder, a table in Markdown and a figure."""

import json
import statistics
from pathlib import Path

from ..pretraining.monitoring import read_log
from .protocol import ALL_VARIANTS, StudySettings, row_dir


METRICS = {
    "probe_cls": "linear probe, CLS",
    "probe_mean": "linear probe, mean of frames",
    "finetune": "fine-tuning",
}
BASELINE = "random_init"


def row_results(output_dir: Path, variant, seed: int) -> dict:
    """What one row and seed measured; missing pieces (a job not run yet) are left out."""
    folder = row_dir(output_dir, variant, seed)
    results = {"variant": variant.name, "seed": seed}
    if (folder / "probe.json").is_file():
        probe = json.loads((folder / "probe.json").read_text())
        results.update(probe_cls=probe["cls"], probe_mean=probe["mean"], chance=probe["chance"])
    eval_results = folder / "finetuned" / "eval_results.json"
    if eval_results.is_file():
        results["finetune"] = json.loads(eval_results.read_text())["eval_accuracy"]
    log = read_log(folder / "pretrained")
    if log:
        last = log[-1]
        results["pretraining"] = {key: last[key] for key in last if key != "samples_per_second"}
    return results


def collect(output_dir: Path, settings: StudySettings) -> list[dict]:
    """What every row and seed measured, leaving out the rows that were not run."""
    rows = [row_results(output_dir, variant, seed) for variant in ALL_VARIANTS for seed in settings.seeds]
    return [row for row in rows if set(row) - {"variant", "seed"}]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: list[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """`{variant: {metric: (mean, std, number of seeds)}}` over the rows that measured the metric."""
    summary = {}
    for variant in ALL_VARIANTS:
        measured = [row for row in rows if row["variant"] == variant.name]
        summary[variant.name] = {}
        for metric in METRICS:
            values = [row[metric] for row in measured if metric in row]
            if values:
                summary[variant.name][metric] = (*mean_std(values), len(values))
    return summary


def gaps_to_baseline(rows: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per row and metric, the mean over seeds of (row - random init at the same seed) and its standard deviation:
    paired by seed, as both share the seed's initialisation and data order."""
    baseline = {row["seed"]: row for row in rows if row["variant"] == BASELINE}
    gaps = {}
    for variant in ALL_VARIANTS:
        if variant.name == BASELINE:
            continue
        gaps[variant.name] = {}
        for metric in METRICS:
            differences = [
                row[metric] - baseline[row["seed"]][metric]
                for row in rows
                if row["variant"] == variant.name and metric in row and metric in baseline.get(row["seed"], {})
            ]
            if differences:
                gaps[variant.name][metric] = mean_std(differences)
    return gaps


def markdown_table(rows: list[dict]) -> str:
    summary, gaps = summarise(rows), gaps_to_baseline(rows)
    header = "| row | " + " | ".join(f"{name} (mean ± std)" for name in METRICS.values()) + " | seeds |"
    lines = [header, "|---" * (len(METRICS) + 2) + "|"]
    for variant in ALL_VARIANTS:
        if not summary[variant.name]:
            continue
        cells = []
        for metric in METRICS:
            if metric not in summary[variant.name]:
                cells.append("—")
                continue
            mean, std, _ = summary[variant.name][metric]
            cell = f"{mean:.3f} ± {std:.3f}"
            if metric in gaps.get(variant.name, {}):
                gap, gap_std = gaps[variant.name][metric]
                cell += f" ({gap:+.3f} ± {gap_std:.3f})"
            cells.append(cell)
        seeds = max((count for _, _, count in summary[variant.name].values()), default=0)
        label = "from scratch (fine-tuning) / random init (probe)" if variant.name == BASELINE else variant.name
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {seeds} |")
    return "\n".join(lines)


def row_legend(rows: list[dict]) -> str:
    """What each row of the table is, for the rows that ran."""
    ran = {row["variant"] for row in rows}
    return "\n".join(f"- `{variant.name}`: {variant.description}" for variant in ALL_VARIANTS if variant.name in ran)


def plot_results(rows: list[dict], path: Path) -> Path:
    from ..plotting import plot_grouped_bars

    summary = summarise(rows)
    groups = {
        variant.name: {METRICS[metric]: summary[variant.name][metric][:2] for metric in summary[variant.name]}
        for variant in ALL_VARIANTS
        if summary[variant.name]
    }
    chance = next((row["chance"] for row in rows if "chance" in row), None)
    return plot_grouped_bars(groups, path, ylabel="test accuracy (unseen speaker)", reference=chance,
                             reference_label="chance", title="SSL study: mean ± std over seeds")


def write_report(output_dir: Path, settings: StudySettings, timings: dict[str, float] | None = None) -> Path:
    """`results.json` (every row and seed, the summary, the settings), `report.md` and `results.png`."""
    output_dir = Path(output_dir)
    rows = collect(output_dir, settings)
    if not timings and (output_dir / "results.json").is_file():
        # A rewritten report keeps the wall times of the run that measured them.
        timings = json.loads((output_dir / "results.json").read_text()).get("timings_s", {})
    (output_dir / "results.json").write_text(
        json.dumps(
            {"settings": settings.to_dict(), "rows": rows, "summary": summarise(rows),
             "gaps_to_random_init": gaps_to_baseline(rows), "timings_s": timings or {}},
            indent=1,
        )
        + "\n"
    )
    plot_results(rows, output_dir / "results.png")
    report = output_dir / "report.md"
    report.write_text(
        "Gaps in brackets: row minus random init at the same seed, mean ± std over seeds.\n\n"
        + markdown_table(rows)
        + "\n\n"
        + row_legend(rows)
        + "\n"
    )
    return report


__all__ = ["collect", "gaps_to_baseline", "markdown_table", "mean_std", "summarise", "write_report"]
