"""Throughput of the pre-training data pipeline: decode → random 10 s crop → fbank + masks in the collator.

Uses `modeling_eat.pretraining.data` as `python -m modeling_eat.pretrain` does (`PretrainingAudioDataset`,
`EpochShuffleSampler`, `EATPretrainingCollator`, a torch `DataLoader`), on WAV files: a folder given with
`--data-dir` (every `*.wav` below it, e.g. an audiofolder), or synthetic 10 s noise clips written to a temporary
folder at `--sampling-rate` (16 kHz needs no resampling; 32 or 44.1 kHz, as most AudioSet files, adds it).

Reports
- the cost of each stage in this process on one thread (decode, fbank + masks per batch), whose sum says how many
  clips/s one dataloader worker delivers, and so how many workers a target rate (`--target`, 200 clips/s) needs;
- clips/s of the whole `DataLoader` with 0, 1, 2 ... workers (the first batch, which pays for the workers'
  start-up, is timed apart).

Usage:
    python benchmarks/bench_dataloader.py [--smoke] [--json results.json] [--data-dir DIR] [--workers 0,1,2]
"""

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modeling_eat import EATConfig
from modeling_eat.audio import crop_num_frames, decode_audio, load_feature_extractor
from modeling_eat.masking_eat import EATMaskGenerator
from modeling_eat.pretraining.data import EATPretrainingCollator, EpochShuffleSampler, PretrainingAudioDataset

from common import SAMPLING_RATE, apply_threads, benchmark_parser, machine_info, print_table, time_calls, write_json


def write_noise_clips(folder: Path, count: int, seconds: float, sampling_rate: int) -> list[Path]:
    import soundfile

    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"clip_{index:04d}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(int(seconds * sampling_rate))).astype(np.float32),
                        sampling_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def loader_clips_per_second(dataset, collator, batch_size: int, workers: int, seed: int) -> dict:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=EpochShuffleSampler(len(dataset), seed=seed),
        collate_fn=collator, num_workers=workers, drop_last=True,
    )
    start = time.perf_counter()
    iterator = iter(loader)
    first = next(iterator)
    first_batch_s = time.perf_counter() - start
    clips, start = 0, time.perf_counter()
    for batch in iterator:
        clips += batch["input_values"].shape[0]
    elapsed = time.perf_counter() - start
    return {"workers": workers, "first_batch_s": first_batch_s, "clips_after_first": clips,
            "clips_per_s": clips / elapsed if clips else None, "batch_shape": list(first["input_values"].shape)}


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--data-dir", type=Path, help="folder of WAV files (default: synthetic noise clips)")
    parser.add_argument("--num-clips", type=int, default=96, help="synthetic clips to write")
    parser.add_argument("--sampling-rate", type=int, default=SAMPLING_RATE, help="rate of the synthetic clips")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="length of the synthetic clips")
    parser.add_argument("--crop-seconds", type=float, default=10.0, help="the pre-training crop (max_length_seconds)")
    parser.add_argument("--batch", type=int, default=12, help="clips per batch (12 per GPU in EAT's AS-2M recipe)")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated dataloader worker counts")
    parser.add_argument("--target", type=float, default=200.0, help="clips/s the workers must deliver")
    args = parser.parse_args()
    apply_threads(args.threads)
    worker_counts = [int(value) for value in args.workers.split(",")]
    if args.smoke:
        args.num_clips, args.clip_seconds, args.crop_seconds, args.batch, args.repeats = 8, 1.0, 1.0, 4, 1
        worker_counts = [0]
    machine = machine_info()
    print(f"{machine['cpu']}, {machine['torch_threads']} threads, torch {machine['torch']}, load "
          f"{machine.get('load_average_1min')}")

    with tempfile.TemporaryDirectory() as scratch:
        if args.data_dir is not None:
            paths = sorted(args.data_dir.rglob("*.wav"))
            if not paths:
                raise ValueError(f"--data-dir {args.data_dir} holds no .wav files: point it at a folder of WAVs.")
            source = f"{len(paths)} WAVs under {args.data_dir.name}"
        else:
            paths = write_noise_clips(Path(scratch), args.num_clips, args.clip_seconds, args.sampling_rate)
            source = f"{len(paths)} synthetic {args.clip_seconds:g} s noise WAVs at {args.sampling_rate} Hz"
        print(f"data: {source}; crop {args.crop_seconds:g} s, batch {args.batch}")
        rows = [{"path": str(path), "bytes": None} for path in paths]
        dataset = PretrainingAudioDataset([{"audio": row} for row in rows], max_length_seconds=args.crop_seconds)
        num_frames = crop_num_frames(args.crop_seconds)
        collator = EATPretrainingCollator(load_feature_extractor(None), EATMaskGenerator(EATConfig()), num_frames)

        # Stage costs on one thread, as inside one dataloader worker (torch gives each worker one thread).
        threads_before = torch.get_num_threads()
        torch.set_num_threads(1)
        sample = [dataset[index] for index in range(args.batch)]
        stages = {
            "decode_and_crop_per_clip_ms": 1000 * time_calls(
                lambda: [dataset[index] for index in range(args.batch)], repeats=args.repeats
            )["median_s"] / args.batch,
            "decode_only_per_clip_ms": 1000 * time_calls(
                lambda: [decode_audio(row) for row in rows[: args.batch]], repeats=args.repeats
            )["median_s"] / args.batch,
            "fbank_and_masks_per_clip_ms": 1000 * time_calls(lambda: collator(sample), repeats=args.repeats)[
                "median_s"] / args.batch,
        }
        torch.set_num_threads(threads_before)
        per_clip_ms = stages["decode_and_crop_per_clip_ms"] + stages["fbank_and_masks_per_clip_ms"]
        stages["one_worker_clips_per_s"] = 1000 / per_clip_ms
        stages["workers_for_target"] = math.ceil(args.target / stages["one_worker_clips_per_s"])
        print_table([stages], list(stages), f"stages on one thread (target {args.target:g} clips/s)")

        results = []
        for workers in worker_counts:
            results.append(loader_clips_per_second(dataset, collator, args.batch, workers, seed=0))
            print(f"  {workers} workers: {results[-1]['clips_per_s']} clips/s", flush=True)
        print_table(results, ["workers", "first_batch_s", "clips_after_first", "clips_per_s"], "DataLoader")

    write_json(args.json, machine, {**vars(args), "json": str(args.json), "data_dir": str(args.data_dir),
                                    "source": source, "workers": worker_counts}, results, stages=stages)


if __name__ == "__main__":
    main()
