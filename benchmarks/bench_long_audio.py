"""Long audio through `pipeline("audio-classification", chunk_length_s=...)`: timeline accuracy, memory, time.

Section "timeline": a model fine-tuned with `python -m modeling_eat.finetune` on the synthetic sound families tags a
file made of known segments (each a run of 1 s clips of one family, 30-60 s long); the score is the share of the
timeline's windows whose top label is the family of the segment under the window's midpoint, in the raw timeline and
in the timeline smoothed over 3 s (`timeline_smoothing_s`, a tenth of the shortest segment).

Section "scaling": the same pipeline on WAV files of 1, 10 and 30 minutes (by default), each in a fresh process:
peak resident memory of that process (FFmpeg, which streams the decoded audio to it, runs beside it and is not
counted), wall time and seconds of audio per second.

    python benchmarks/bench_long_audio.py --json long_audio.json          # small preset, 2000 steps, 5 min file
    python benchmarks/bench_long_audio.py --smoke --json smoke.json        # tiny, 3 families, 1 min file (CI)
"""

import csv
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from modeling_eat.synthetic_audio import SYNTHETIC_LABELS, generate_clip

from common import apply_threads, benchmark_parser, machine_info, print_table, write_json


SAMPLING_RATE = 16000
# `recording_clips`: each training file is that many back-to-back 1 s clips of one family, cut by the fine-tuning's
# random 1 s crops, so that training sees windows that straddle two events as the timeline's windows do.
FULL = {"labels": list(SYNTHETIC_LABELS), "config_name": "small", "train_per_class": 100, "recording_clips": 3,
        "steps": 2000,
        "timeline_seconds": 300.0, "segment_seconds": (30.0, 60.0), "timeline_smoothing_s": 3.0,
        "scaling_minutes": (1.0, 10.0, 30.0)}
SMOKE = {"labels": ["chirp", "noise_burst", "clicks"], "config_name": "tiny", "train_per_class": 150,
         "recording_clips": 1, "steps": 600,
         "timeline_seconds": 60.0, "segment_seconds": (15.0, 25.0), "timeline_smoothing_s": 3.0,
         "scaling_minutes": (0.25, 1.0)}


def write_training_set(folder: Path, labels, per_class: int, seed: int, recording_clips: int = 1) -> Path:
    """An audiofolder `train/` of `per_class` files per family of `labels` (the synthetic families of the
    quickstart's data), each `recording_clips` back-to-back 1 s clips."""
    import soundfile

    split = folder / "train"
    split.mkdir(parents=True, exist_ok=True)
    rows = []
    for label in labels:
        for index in range(per_class):
            name = f"{label}_{index:04d}.wav"
            rng = np.random.default_rng([seed, labels.index(label), index])
            recording = np.concatenate([generate_clip(label, rng) for _ in range(recording_clips)])
            soundfile.write(split / name, recording, SAMPLING_RATE, subtype="PCM_16")
            rows.append((name, label))
    with (split / "metadata.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("file_name", "label"), *rows])
    return folder


def fine_tune(data: Path, output_dir: Path, config_name: str, steps: int, seed: int) -> Path:
    command = [
        sys.executable, "-m", "modeling_eat.finetune", "--config_name", config_name,
        "--dataset_name", str(data), "--max_length_seconds", "1", "--max_steps", str(steps),
        "--learning_rate", "1e-3", "--warmup_steps", str(steps // 10), "--per_device_train_batch_size", "16",
        "--output_dir", str(output_dir), "--do_train", "--eval_strategy", "no", "--save_strategy", "no",
        "--report_to", "none", "--seed", str(seed), "--disable_tqdm", "true",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return output_dir


def timeline_segments(labels, total_seconds: float, segment_seconds, seed: int) -> list[tuple[str, float, float]]:
    """(label, start, end) of consecutive segments covering `total_seconds`, lengths drawn in `segment_seconds`."""
    rng = np.random.default_rng(seed)
    order, lengths = [], []
    while sum(lengths) < total_seconds:
        order.extend(rng.permutation(labels).tolist())
        lengths.extend(rng.uniform(*segment_seconds, size=len(labels)).tolist())
    segments, start = [], 0.0
    for label, length in zip(order, lengths):
        end = min(start + length, total_seconds)
        segments.append((label, start, end))
        start = end
        if end >= total_seconds:
            break
    return segments


def write_timeline_file(path: Path, segments, seed: int) -> None:
    """Each segment as back-to-back 1 s clips of its family (clips unseen in training: another seed)."""
    import soundfile

    with soundfile.SoundFile(path, "w", SAMPLING_RATE, 1, "PCM_16") as output:
        for number, (label, start, end) in enumerate(segments):
            rng = np.random.default_rng([seed, number])
            num_samples = int(round(end * SAMPLING_RATE)) - int(round(start * SAMPLING_RATE))
            clips = [generate_clip(label, rng) for _ in range(-(-num_samples // SAMPLING_RATE))]
            output.write(np.concatenate(clips)[:num_samples])


def label_at(segments, seconds: float) -> str:
    return next(label for label, start, end in segments if start <= seconds < end or end == segments[-1][2])


def timeline_accuracy(model_dir: Path, path: Path, segments, chunk_length_s: float, smoothing_s: float) -> dict:
    """The share of windows whose top label is their segment's, of the raw timeline and of the one smoothed over
    `smoothing_s` (the pipeline's `timeline_smoothing_s`)."""
    from transformers import pipeline

    import modeling_eat  # noqa: F401  (registers the EAT pipeline)

    classify = pipeline("audio-classification", model=str(model_dir))
    boundaries = [end for _, _, end in segments[:-1]]
    row = {"section": "timeline", "segments": len(segments), "audio_s": segments[-1][2], "smoothing_s": smoothing_s}
    for suffix, smoothing in (("", None), ("_smoothed", smoothing_s)):
        start = time.perf_counter()
        result = classify(str(path), chunk_length_s=chunk_length_s, return_timeline=True, top_k=1,
                          timeline_smoothing_s=smoothing)
        seconds = time.perf_counter() - start
        timeline = result["timeline"]
        correct = [window["labels"][0]["label"] == label_at(segments, (window["start"] + window["end"]) / 2)
                   for window in timeline]
        near = chunk_length_s
        inside = [ok for ok, window in zip(correct, timeline)
                  if not any(window["start"] - near < b < window["end"] + near for b in boundaries)]
        row.update({"windows": len(timeline), f"window_accuracy{suffix}": sum(correct) / len(correct),
                    f"accuracy_away_from_boundaries{suffix}": sum(inside) / max(1, len(inside)),
                    f"pipeline_s{suffix}": round(seconds, 2)})
    return row


SCALING_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import torch
    torch.set_num_threads(int(sys.argv[4]))
    from transformers import pipeline
    import modeling_eat  # noqa: F401
    classify = pipeline("audio-classification", model=sys.argv[1])
    start = time.perf_counter()
    result = classify(sys.argv[2], chunk_length_s=float(sys.argv[3]), return_timeline=True)
    seconds = time.perf_counter() - start
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    print(json.dumps({"seconds": seconds, "windows": len(result["timeline"]),
                      "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024}))
    """
)


def write_long_file(path: Path, minutes: float, seed: int) -> None:
    """`minutes` of the synthetic families in 1 s clips, written as it goes."""
    import soundfile

    rng = np.random.default_rng(seed)
    with soundfile.SoundFile(path, "w", SAMPLING_RATE, 1, "PCM_16") as output:
        for _ in range(int(minutes * 60)):
            output.write(generate_clip(SYNTHETIC_LABELS[int(rng.integers(len(SYNTHETIC_LABELS)))], rng))


def scaling(model_dir: Path, folder: Path, minutes_list, chunk_length_s: float, threads: int) -> list[dict]:
    rows = []
    for minutes in minutes_list:
        path = folder / f"long_{minutes:g}min.wav"
        write_long_file(path, minutes, seed=7)
        completed = subprocess.run(
            [sys.executable, "-c", SCALING_CHILD, str(model_dir), str(path), str(chunk_length_s), str(threads)],
            check=True, capture_output=True, text=True,
        )
        child = json.loads(completed.stdout.strip().splitlines()[-1])
        rows.append({"section": "scaling", "audio_min": minutes, "file_mib": round(path.stat().st_size / 2**20, 1),
                     "windows": child["windows"], "seconds": round(child["seconds"], 2),
                     "audio_s_per_s": round(minutes * 60 / child["seconds"], 1),
                     "peak_rss_mib": round(child["peak_rss_mib"], 1)})
    first, last = rows[0], rows[-1]
    last["peak_rss_vs_shortest"] = round(last["peak_rss_mib"] / first["peak_rss_mib"], 3)
    last["time_per_audio_s_vs_shortest"] = round(
        (last["seconds"] / last["audio_min"]) / (first["seconds"] / first["audio_min"]), 3
    )
    return rows


def main(argv=None):
    parser = benchmark_parser(__doc__)
    parser.add_argument("--work_dir", type=Path, default=None, help="where data and models go (default: a temp dir)")
    parser.add_argument("--model_dir", type=Path, default=None, help="a fine-tuned folder to use instead of training")
    parser.add_argument("--sections", default="timeline,scaling")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    threads = apply_threads(args.threads)
    settings = dict(SMOKE if args.smoke else FULL, chunk_length_s=1.12, threads=threads)
    machine = machine_info()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_long_audio_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    model_dir = args.model_dir
    rows = []
    if model_dir is None:
        data = write_training_set(work / "data", settings["labels"], settings["train_per_class"], args.seed,
                                  settings["recording_clips"])
        started = time.perf_counter()
        model_dir = fine_tune(data, work / "model", settings["config_name"], settings["steps"], args.seed)
        settings["fine_tuning_s"] = round(time.perf_counter() - started, 1)
    sections = args.sections.split(",")
    if "timeline" in sections:
        segments = timeline_segments(settings["labels"], settings["timeline_seconds"], settings["segment_seconds"],
                                     args.seed + 1)
        write_timeline_file(work / "timeline.wav", segments, args.seed + 2)
        rows.append(timeline_accuracy(model_dir, work / "timeline.wav", segments, settings["chunk_length_s"],
                                      settings["timeline_smoothing_s"]))
        print_table(rows[-1:], ["windows", "window_accuracy", "window_accuracy_smoothed", "smoothing_s",
                                "accuracy_away_from_boundaries", "segments", "audio_s", "pipeline_s"], "timeline")
    if "scaling" in sections:
        scaled = scaling(model_dir, work, settings["scaling_minutes"], settings["chunk_length_s"], threads)
        rows.extend(scaled)
        print_table(scaled, ["audio_min", "windows", "seconds", "audio_s_per_s", "peak_rss_mib"], "scaling")
    write_json(args.json, machine, settings, rows)


if __name__ == "__main__":
    main()
