"""Throughput of EATFeatureExtractor (batched PyTorch Kaldi fbank) against transformers' ASTFeatureExtractor.

Input: random-noise clips of 10 s at 16 kHz. Reports clips per second for
- our extractor on CPU with 1 thread and with all threads (`torch.set_num_threads`), from a list of numpy clips;
- `ASTFeatureExtractor` in the same run (its numpy path when torchaudio is absent, as on machines without it);
- our extractor on GPU, a batch of torch tensors already on the device, when CUDA is available.

Usage:
    python benchmarks/bench_feature_extraction.py [--smoke] [--json results.json]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_eat.feature_extraction_eat import EATFeatureExtractor  # noqa: E402


SAMPLING_RATE = 16000


def clips_per_second(run, num_clips: int, repeats: int, synchronize=None) -> tuple[float, float]:
    """Median and best clips/s over `repeats` timed calls, after one warm-up call."""
    run()
    if synchronize:
        synchronize()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if synchronize:
            synchronize()
        timings.append(time.perf_counter() - start)
    return num_clips / statistics.median(timings), num_clips / min(timings)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, runs in seconds")
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--batch", type=int, default=64, help="CPU batch size")
    parser.add_argument("--gpu-batch", type=int, default=256, help="GPU batch size")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.batch, args.gpu_batch, args.repeats = 1.0, 4, 8, 1

    import warnings

    from transformers import ASTFeatureExtractor

    # AST's numpy mel bank warns about an all-zero filter at 128 bins on every construction; it is not ours to fix.
    warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
    from transformers.utils import is_speech_available

    all_threads = torch.get_num_threads()
    num_samples = int(args.seconds * SAMPLING_RATE)
    rng = np.random.default_rng(0)
    clips = list((0.1 * rng.standard_normal((args.batch, num_samples))).astype(np.float32))
    eat = EATFeatureExtractor()
    ast = ASTFeatureExtractor()
    ast_path = "torchaudio" if is_speech_available() else "numpy"

    results = []

    def record(name, device, threads, batch, rates):
        median, best = rates
        results.append(
            {
                "name": name,
                "device": device,
                "threads": threads,
                "batch": batch,
                "clips_per_s": median,
                "best_clips_per_s": best,
            }
        )

    for threads in sorted({1, all_threads}):
        torch.set_num_threads(threads)
        rates = clips_per_second(lambda: eat(clips, sampling_rate=SAMPLING_RATE), len(clips), args.repeats)
        record("EATFeatureExtractor", "cpu", threads, len(clips), rates)
    torch.set_num_threads(all_threads)
    # AST's numpy path runs in numpy: torch's thread setting does not apply to it.
    rates = clips_per_second(lambda: ast(clips, sampling_rate=SAMPLING_RATE), len(clips), max(1, args.repeats // 2))
    record(f"ASTFeatureExtractor ({ast_path})", "cpu", "n/a", len(clips), rates)

    if torch.cuda.is_available():
        gpu_clips = torch.from_numpy(
            (0.1 * rng.standard_normal((args.gpu_batch, num_samples))).astype(np.float32)
        ).cuda()
        rates = clips_per_second(
            lambda: eat(gpu_clips, sampling_rate=SAMPLING_RATE, return_tensors="pt"),
            args.gpu_batch,
            args.repeats,
            synchronize=torch.cuda.synchronize,
        )
        record("EATFeatureExtractor", torch.cuda.get_device_name(), "n/a", args.gpu_batch, rates)
        gpu_note = None
    else:
        gpu_note = "GPU: not available"

    ast_rate = next(r["clips_per_s"] for r in results if r["name"].startswith("AST"))
    print(
        f"{args.seconds:g} s clips at {SAMPLING_RATE} Hz, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"median of {args.repeats} timed calls (best in brackets)"
    )
    header = (
        f"{'extractor':34s} {'device':22s} {'threads':>7s} {'batch':>5s} {'clips/s':>18s} {'ms/clip':>8s} "
        f"{'vs AST':>7s}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rate = f"{r['clips_per_s']:.1f} ({r['best_clips_per_s']:.1f})"
        print(
            f"{r['name']:34s} {r['device']:22s} {str(r['threads']):>7s} {r['batch']:>5d} {rate:>18s} "
            f"{1000 / r['clips_per_s']:>8.2f} {r['clips_per_s'] / ast_rate:>6.1f}x"
        )
    if gpu_note:
        print(gpu_note)

    if args.json:
        summary = {
            "clip_seconds": args.seconds,
            "sampling_rate": SAMPLING_RATE,
            "repeats": args.repeats,
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "gpu": None if gpu_note else torch.cuda.get_device_name(),
            "results": results,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
