"""Throughput of EATFeatureExtractor (batched PyTorch Kaldi fbank) against transformers' ASTFeatureExtractor and
torchaudio's Kaldi fbank.

Input: random-noise clips of 10 s at 16 kHz. Sections (`--sections`, default all):
- cpu: our extractor on CPU with 1 thread and with all threads (`torch.set_num_threads`), from a list of numpy clips
  (`--batch` of them), and `ASTFeatureExtractor` in the same run (its torchaudio path where torchaudio loads, else its
  numpy path; with `--threads N`, numpy's BLAS is held to N threads too, through threadpoolctl).
- torchaudio: `torchaudio.compliance.kaldi.fbank` one clip at a time, called as `ASTFeatureExtractor` calls it, on CPU
  with all threads, and the largest difference between its fbank and ours (`kaldi_fbank`) on the same clips.
  torchaudio is imported here only, and only if it loads: where it does not, the row says why.
- device: a batch of torch tensors at each of `--device-batches` (default 64 and 256) on `--device` (default: the
  GPU when there is one; `--device cpu` runs the same code on CPU). For each batch: our extractor with the input
  already on the device (clips/s, and with the host-to-device copy of a pinned batch included, `h2d_clips_per_s`), the
  batched `kaldi_fbank` alone (without the extractor's validation, padding and normalization), the largest difference
  between the device's `input_values` and the CPU's on the same batch, and torchaudio's fbank clip by clip on the
  device where torchaudio loads. Timed calls end with a CUDA synchronize.

Every figure is the median (best in brackets) of `--repeats` timed calls (`--device-repeats` on a GPU) after one
warm-up call.

Usage:
    python benchmarks/bench_feature_extraction.py [--smoke] [--json results.json] [--device cpu] [--sections cpu]
"""

import contextlib
import statistics
import sys
import time
import traceback
import warnings

import numpy as np
import torch

from modeling_eat.feature_extraction_eat import EATFeatureExtractor, kaldi_fbank

from common import (
    SAMPLING_RATE,
    apply_threads,
    benchmark_parser,
    failure_status,
    machine_info,
    print_table,
    write_json,
)


SECTIONS = ("cpu", "torchaudio", "device")
NUM_MEL_BINS = 128


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


def load_torchaudio_kaldi():
    """`(torchaudio.compliance.kaldi, None)`, or `(None, why it cannot be imported)`.

    Imported here only, never at module level: a torchaudio build that does not match torch fails with an OSError
    (a missing CUDA library), not an ImportError, and must not stop the other measurements.
    """
    try:
        import torchaudio.compliance.kaldi as kaldi
    except Exception as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        return None, f"torchaudio not importable: {type(error).__name__}: {reason}"
    return kaldi, None


def torchaudio_fbank(kaldi, waveform: torch.Tensor) -> torch.Tensor:
    """One clip through torchaudio's fbank the way `ASTFeatureExtractor` calls it (its other options are Kaldi's and
    EAT's defaults: no dither, 10 ms shift, no energy)."""
    return kaldi.fbank(waveform.unsqueeze(0), sample_frequency=SAMPLING_RATE, window_type="hanning",
                       num_mel_bins=NUM_MEL_BINS)


def max_abs_diff_to_ours(kaldi, waveforms: torch.Tensor) -> float:
    """Largest difference between torchaudio's fbank of each clip (mean removed first, as EAT does) and
    `kaldi_fbank` of the whole batch."""
    ours = kaldi_fbank(waveforms, sampling_rate=SAMPLING_RATE, num_mel_bins=NUM_MEL_BINS)
    theirs = torch.stack([torchaudio_fbank(kaldi, clip - clip.mean()) for clip in waveforms])
    return (ours - theirs).abs().max().item()


def blas_thread_limit(threads: int | None):
    """`(context, threads it allows)`: AST's numpy path runs numpy's BLAS threads, which torch's setting does not
    reach; `threadpoolctl` (a scikit-learn dependency) holds them to `threads`."""
    if threads is None:
        return contextlib.nullcontext(), "n/a"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext(), "n/a (no threadpoolctl)"
    return threadpool_limits(limits=threads), threads


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def run_cpu(args, clips, eat) -> list[dict]:
    rows = []
    all_threads = torch.get_num_threads()
    for threads in sorted({1, all_threads}):
        torch.set_num_threads(threads)
        rates = clips_per_second(lambda: eat(clips, sampling_rate=SAMPLING_RATE), len(clips), args.repeats)
        rows.append(rate_row("EATFeatureExtractor", "cpu", threads, len(clips), rates))
    torch.set_num_threads(all_threads)
    try:
        from transformers import ASTFeatureExtractor
        from transformers.utils import is_speech_available

        ast = ASTFeatureExtractor()
    except Exception as error:
        # transformers imports torchaudio for AST whenever it is installed, also when that build cannot load.
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        rows.append({"name": "ASTFeatureExtractor", "device": "cpu", "threads": "n/a", "batch": len(clips),
                     "status": f"not run: {type(error).__name__}: {reason}"})
        return rows
    ast_path = "torchaudio" if is_speech_available() else "numpy"
    limit, ast_threads = blas_thread_limit(args.threads) if ast_path == "numpy" else (contextlib.nullcontext(), "n/a")
    with limit:
        rates = clips_per_second(
            lambda: ast(clips, sampling_rate=SAMPLING_RATE), len(clips), max(1, args.repeats // 2)
        )
    rows.append(rate_row(f"ASTFeatureExtractor ({ast_path})", "cpu", ast_threads, len(clips), rates))
    return rows


def run_torchaudio(args, clips) -> list[dict]:
    row = {"name": "torchaudio kaldi.fbank per clip", "device": "cpu", "threads": torch.get_num_threads(),
           "batch": len(clips)}
    kaldi, reason = load_torchaudio_kaldi()
    if kaldi is None:
        return [{**row, "status": f"not run: {reason}"}]
    tensors = [torch.from_numpy(clip) for clip in clips]
    rates = clips_per_second(lambda: [torchaudio_fbank(kaldi, clip) for clip in tensors], len(clips), args.repeats)
    row = {**row, **rate_row(row["name"], "cpu", row["threads"], len(clips), rates)}
    row["max_abs_diff_vs_ours"] = max_abs_diff_to_ours(kaldi, torch.stack(tensors))
    return [row]


def run_device(args, device, eat, rng, num_samples) -> list[dict]:
    rows = []
    on_gpu = device.type == "cuda"
    synchronize = torch.cuda.synchronize if on_gpu else None
    repeats = args.device_repeats if on_gpu else args.repeats
    threads = "n/a" if on_gpu else torch.get_num_threads()
    kaldi, torchaudio_reason = load_torchaudio_kaldi()
    for batch in args.device_batches:
        host = torch.from_numpy((0.1 * rng.standard_normal((batch, num_samples))).astype(np.float32))
        if on_gpu:
            # Page-locked memory: the copy is a DMA at full bus speed, as a DataLoader with pin_memory gives it.
            host = host.pin_memory()
        waveforms = host.to(device)

        def extract(batch_waveforms):
            return eat(batch_waveforms, sampling_rate=SAMPLING_RATE, return_tensors="pt")["input_values"]

        rates = clips_per_second(lambda: extract(waveforms), batch, repeats, synchronize)
        row = rate_row("EATFeatureExtractor", device_name(device), threads, batch, rates)
        row["h2d_clips_per_s"], _ = clips_per_second(
            lambda: extract(host.to(device, non_blocking=True)), batch, repeats, synchronize
        )
        # The same batch through the CPU path: the device's kernels (cuFFT, cuBLAS) against the CPU's, in fp32.
        row["max_abs_diff_vs_cpu"] = (extract(waveforms).cpu() - extract(host)).abs().max().item()
        rows.append(row)

        rates = clips_per_second(
            lambda: kaldi_fbank(waveforms, sampling_rate=SAMPLING_RATE, num_mel_bins=NUM_MEL_BINS,
                                max_frames=eat.max_length),
            batch, repeats, synchronize,
        )
        rows.append(rate_row("kaldi_fbank (batched core)", device_name(device), threads, batch, rates))

        name = "torchaudio kaldi.fbank per clip"
        if kaldi is None:
            rows.append({"name": name, "device": device_name(device), "threads": threads, "batch": batch,
                         "status": f"not run: {torchaudio_reason}"})
            continue
        rates = clips_per_second(lambda: [torchaudio_fbank(kaldi, clip) for clip in waveforms], batch, repeats,
                                 synchronize)
        rows.append(rate_row(name, device_name(device), threads, batch, rates))
        rows[-1]["max_abs_diff_vs_ours"] = max_abs_diff_to_ours(kaldi, waveforms)
    return rows


def summary_line(row: dict) -> str:
    where = f"{row.get('name')} on {row.get('device')}, {row.get('threads')} threads, batch {row.get('batch')}"
    if row.get("status") != "ok":
        return f"  {where}: {row.get('status')}"
    extras = [f"{row['h2d_clips_per_s']:.1f} clips/s with the host-to-device copy"] if "h2d_clips_per_s" in row else []
    extras += [f"{label} {row[key]:.2e}" for key, label in (("max_abs_diff_vs_cpu", "max |device - CPU|"),
                                                            ("max_abs_diff_vs_ours", "max |torchaudio - ours|"))
               if key in row]
    return f"  {where}: {row['clips_per_s']:.1f} clips/s" + "".join(f"; {extra}" for extra in extras)


def rate_row(name, device, threads, batch, rates) -> dict:
    median, best = rates
    return {"name": name, "device": device, "threads": threads, "batch": batch, "clips_per_s": median,
            "best_clips_per_s": best, "ms_per_clip": 1000 / median, "status": "ok"}


def main():
    parser = benchmark_parser(__doc__)
    parser.set_defaults(repeats=5)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--batch", type=int, default=64, help="clips per call in the cpu and torchaudio sections")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the device section runs (auto: the GPU, skipped without one)")
    parser.add_argument("--device-batches", default="64,256", help="comma-separated batch sizes of the device section")
    parser.add_argument("--device-repeats", type=int, default=20, help="timed calls per device case on a GPU")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.batch, args.device_batches, args.repeats, args.device_repeats = 1.0, 4, "4,8", 1, 1
    sections = args.sections.split(",")
    if set(sections) - set(SECTIONS):
        raise ValueError(f"unknown --sections entries {sorted(set(sections) - set(SECTIONS))}; choose from "
                         f"{', '.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu (or auto)")
    if args.device == "auto":
        device = torch.device("cuda") if torch.cuda.is_available() else None
    else:
        device = torch.device(args.device)
    apply_threads(args.threads)
    args.device_batches = [int(batch) for batch in args.device_batches.split(",")]
    machine = machine_info()

    # AST's numpy mel bank warns about an all-zero filter at 128 bins on every construction; it is not ours to fix.
    warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")

    num_samples = int(args.seconds * SAMPLING_RATE)
    rng = np.random.default_rng(0)
    clips = list((0.1 * rng.standard_normal((args.batch, num_samples))).astype(np.float32))
    eat = EATFeatureExtractor()
    print(f"{args.seconds:g} s clips at {SAMPLING_RATE} Hz, torch {machine['torch']}, transformers "
          f"{machine['transformers']}, {machine['cpu_count']} CPUs, GPU {machine['gpu']}, load "
          f"{machine.get('load_average_1min')}; median of {args.repeats} timed calls on CPU, "
          f"{args.device_repeats} on a GPU (best in brackets)", flush=True)

    settings = {**vars(args), "json": str(args.json), "device": str(device), "sampling_rate": SAMPLING_RATE}
    runners = {
        "cpu": lambda: run_cpu(args, clips, eat),
        "torchaudio": lambda: run_torchaudio(args, clips),
        "device": lambda: run_device(args, device, eat, rng, num_samples),
    }
    results, notes = [], []
    for section in SECTIONS:
        if section not in sections:
            continue
        if section == "device" and device is None:
            notes.append("device section: no GPU here (pass --device cpu to run it on CPU)")
            continue
        try:
            rows = runners[section]()
        except Exception as error:
            traceback.print_exc()
            rows = [{"name": f"{section} section", "status": failure_status(error)}]
        results += [{"section": section, **row} for row in rows]
        for row in rows:
            print(summary_line(row))
        write_json(args.json, machine, settings, results, notes=notes)

    ast_rate = next((row.get("clips_per_s") for row in results if row["name"].startswith("AST")), None)
    for row in results:
        if ast_rate and row.get("clips_per_s"):
            row["vs AST"] = row["clips_per_s"] / ast_rate
    print_table(results, ["name", "device", "threads", "batch", "clips_per_s", "best_clips_per_s", "ms_per_clip",
                          "vs AST", "h2d_clips_per_s", "max_abs_diff_vs_cpu", "max_abs_diff_vs_ours", "status"])
    for note in notes:
        print(note)
    write_json(args.json, machine, settings, results, notes=notes)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    main()
