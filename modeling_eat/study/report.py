"""The study's results: every run as measured, their mean ± standard deviation over the seeds, the gap of each run to
the random-init encoder of the same preset and seed, tables in Markdown and a figure (the gains against the number
of pre-training updates when the study spans several lengths, bars otherwise)."""

import json
import statistics
from collections import defaultdict
from pathlib import Path

from ..pretraining.monitoring import read_log
from .protocol import ALL_VARIANTS, BASELINE, VARIANTS_BY_NAME, Run, StudySettings, run_dir


METRICS = {
    "probe_cls": "linear probe, CLS",
    "probe_mean": "linear probe, mean of frames",
    "finetune": "fine-tuning",
}
JOB_KINDS = ("pretrain", "probe", "finetune")
# The last pre-training log line's signals that the table of every run shows.
RUN_SIGNALS = ("utterance_loss", "frame_loss", "target_position_share", "teacher_distance")


def find_runs(output_dir: Path) -> list[Run]:
    """Every run with a folder under `output_dir/runs`, in the study's order of rows, then preset, length, seed."""
    runs = []
    for folder in Path(output_dir).glob("runs/*/*/*_steps/seed_*"):
        variant, preset, steps, seed = folder.relative_to(Path(output_dir) / "runs").parts
        if variant in VARIANTS_BY_NAME:
            runs.append(Run(variant, preset, int(steps.removesuffix("_steps")), int(seed.removeprefix("seed_"))))
    order = {variant.name: index for index, variant in enumerate(ALL_VARIANTS)}
    return sorted(runs, key=lambda run: (order[run.variant], run.preset, run.steps, run.seed))


def wall_times(folder: Path) -> dict[str, float]:
    times = {}
    for path in folder.glob("*.timing.json"):
        times[path.name.removesuffix(".timing.json")] = json.loads(path.read_text())["wall_s"]
    return times


def run_results(output_dir: Path, run: Run) -> list[dict]:
    """What one run measured, one dict per evaluation data set; missing pieces (a job not run yet) are left out."""
    folder = run_dir(output_dir, run)
    common = {"variant": run.variant, "preset": run.preset, "steps": run.steps, "seed": run.seed}
    log = read_log(folder / "pretrained")
    if log:
        common["pretraining"] = {key: value for key, value in log[-1].items() if key != "samples_per_second"}
    if "pretrain" in (times := wall_times(folder)):
        common["pretrain_s"] = times["pretrain"]
    rows = []
    for results in sorted(path for path in folder.iterdir() if path.is_dir() and path.name != "pretrained"):
        row = {**common, "dataset": results.name}
        if (results / "probe.json").is_file():
            probe = json.loads((results / "probe.json").read_text())
            row.update(probe_cls=probe["cls"], probe_mean=probe["mean"], chance=probe["chance"])
        eval_results = results / "finetuned" / "eval_results.json"
        if eval_results.is_file():
            row["finetune"] = json.loads(eval_results.read_text())["eval_accuracy"]
        row.update({f"{kind}_s": seconds for kind, seconds in wall_times(results).items()})
        if any(metric in row for metric in METRICS):
            rows.append(row)
    return rows


def collect(output_dir: Path) -> list[dict]:
    """What every run of the study folder measured, on every evaluation data set."""
    return [row for run in find_runs(output_dir) for row in run_results(output_dir, run)]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def point_key(row: dict) -> tuple:
    return row["dataset"], row["variant"], row["preset"], row["steps"]


def summarise(rows: list[dict]) -> list[dict]:
    """One entry per data set, row, preset, length and metric: the mean and std over seeds, the seeds, and for
    pre-trained rows the gap to random init at the same data set, preset and seed (mean ± std of the paired
    differences: both share the seed's initialisation and data order)."""
    baseline = {(row["dataset"], row["preset"], row["seed"]): row for row in rows if row["variant"] == BASELINE}
    points = defaultdict(list)
    for row in rows:
        points[point_key(row)].append(row)
    summary = []
    for (dataset, variant, preset, steps), measured in points.items():
        for metric in METRICS:
            values = [row[metric] for row in measured if metric in row]
            if not values:
                continue
            entry = {"dataset": dataset, "variant": variant, "preset": preset, "steps": steps, "metric": metric}
            entry["mean"], entry["std"] = mean_std(values)
            entry["seeds"] = sorted(row["seed"] for row in measured if metric in row)
            if variant != BASELINE:
                differences = [
                    row[metric] - baseline[key][metric]
                    for row in measured
                    if metric in row and metric in baseline.get(key := (dataset, preset, row["seed"]), {})
                ]
                if differences:
                    entry["gap"], entry["gap_std"] = mean_std(differences)
            summary.append(entry)
    return summary


def _cell(entry: dict | None) -> str:
    """`mean ± std (gap ± std)`; a single seed has no spread to show, so its cell names the seed instead."""
    if entry is None:
        return "—"
    if len(entry["seeds"]) == 1:
        gap = f" ({entry['gap']:+.3f})" if "gap" in entry else ""
        return f"{entry['mean']:.3f}{gap}, seed {entry['seeds'][0]} only"
    cell = f"{entry['mean']:.3f} ± {entry['std']:.3f}"
    if "gap" in entry:
        cell += f" ({entry['gap']:+.3f} ± {entry['gap_std']:.3f})"
    return cell


def markdown_table(rows: list[dict]) -> str:
    """Per data set: one line per row, preset and length, mean ± std over seeds (gap to random init)."""
    summary = {(entry["dataset"], entry["variant"], entry["preset"], entry["steps"], entry["metric"]): entry
               for entry in summarise(rows)}
    sections = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        lines = [f"**{dataset}**", "",
                 "| row | preset | updates | " + " | ".join(f"{name} (mean ± std)" for name in METRICS.values())
                 + " | seeds |", "|---" * (len(METRICS) + 4) + "|"]
        for key in dict.fromkeys(point_key(row) for row in rows if row["dataset"] == dataset):
            entries = [summary.get((*key, metric)) for metric in METRICS]
            seeds = max((entry["seeds"] for entry in entries if entry), key=len)
            label = "random init (probe) / from scratch (fine-tuning)" if key[1] == BASELINE else key[1]
            lines.append(f"| {label} | {key[2]} | {key[3]} | " + " | ".join(map(_cell, entries))
                         + f" | {', '.join(map(str, seeds))} |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def runs_table(rows: list[dict]) -> str:
    """Every run and evaluation as measured, with its wall times and its pre-training's last logged signals."""
    header = ["data set", "row", "preset", "updates", "seed", *METRICS, "pre-training s", "probe s", "fine-tuning s",
              *RUN_SIGNALS]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]

    def number(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    for row in rows:
        signals = row.get("pretraining", {})
        cells = [row["dataset"], row["variant"], row["preset"], str(row["steps"]), str(row["seed"]),
                 *(number(row.get(metric)) for metric in METRICS),
                 *(number(row.get(f"{kind}_s"), 0) for kind in JOB_KINDS),
                 *(number(signals.get(signal)) for signal in RUN_SIGNALS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def row_legend(rows: list[dict]) -> str:
    """What each row of the table is, for the rows that ran."""
    ran = {row["variant"] for row in rows}
    return "\n".join(f"- `{variant.name}`: {variant.description}" for variant in ALL_VARIANTS if variant.name in ran)


def spans_lengths(rows: list[dict]) -> bool:
    """Whether some pre-trained row ran at more than one length: the figure is then a learning curve."""
    lengths = defaultdict(set)
    for row in rows:
        if row["variant"] != BASELINE:
            lengths[row["variant"], row["preset"]].add(row["steps"])
    return any(len(steps) > 1 for steps in lengths.values())


def plot_results(rows: list[dict], path: Path) -> Path:
    from ..plotting import plot_grouped_bars, plot_learning_curves

    summary = summarise(rows)
    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    if spans_lengths(rows):
        panels = {}
        for dataset in datasets:
            for metric, metric_name in METRICS.items():
                lines = defaultdict(list)
                for entry in summary:
                    if entry["dataset"] == dataset and entry["metric"] == metric and "gap" in entry:
                        lines[f"{entry['variant']}, {entry['preset']}"].append(
                            (entry["steps"], entry["gap"], entry["gap_std"]))
                panels[f"{dataset}: {metric_name}"] = {label: sorted(points) for label, points in lines.items()}
        return plot_learning_curves(panels, path, xlabel="pre-training updates",
                                    ylabel="gain over random init (same seed)", columns=len(METRICS),
                                    title="Gain over random init against pre-training length: mean ± std over seeds")
    groups = defaultdict(dict)
    for entry in summary:
        label = entry["variant"] if len(datasets) == 1 else f"{entry['dataset']}: {entry['variant']}"
        group = groups[f"{label}, {entry['preset']}, {entry['steps']}"]
        group[METRICS[entry["metric"]]] = (entry["mean"], entry["std"])
    chance = next((row["chance"] for row in rows if "chance" in row), None) if len(datasets) == 1 else None
    return plot_grouped_bars(dict(groups), path, ylabel="test accuracy", reference=chance,
                             reference_label="chance", title="SSL study: mean ± std over seeds")


def write_report(output_dir: Path, settings: StudySettings, timings: dict[str, float] | None = None) -> Path:
    """`results.json` (every run, the summary, the settings, the wall times), `report.md` and `results.png`.
    `timings` (the jobs this invocation ran, and its total) join those of earlier invocations of a resumed study."""
    output_dir = Path(output_dir)
    rows = collect(output_dir)
    invocations = []
    if (output_dir / "results.json").is_file():
        invocations = json.loads((output_dir / "results.json").read_text()).get("invocations", [])
    if timings:
        invocations.append(timings)
    (output_dir / "results.json").write_text(
        json.dumps({"settings": settings.to_dict(), "rows": rows, "summary": summarise(rows),
                    "invocations": invocations}, indent=1) + "\n"
    )
    if rows:
        plot_results(rows, output_dir / "results.png")
    totals = ", ".join(f"{invocation['total']:.0f} s" for invocation in invocations if "total" in invocation)
    report = output_dir / "report.md"
    report.write_text(
        "Gaps in brackets: row minus random init at the same data set, preset and seed, mean ± std over seeds.\n\n"
        + markdown_table(rows)
        + "\n\n"
        + row_legend(rows)
        + "\n\nEvery run (wall times in seconds; the pre-training signals of its last logged step):\n\n"
        + runs_table(rows)
        + (f"\n\nWall time of each invocation of the study: {totals}.\n" if totals else "\n")
    )
    return report


__all__ = [
    "collect",
    "find_runs",
    "markdown_table",
    "mean_std",
    "runs_table",
    "summarise",
    "write_report",
]
