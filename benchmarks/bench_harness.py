"""What the evaluation harnesses' embeddings cost (`modeling_eat.hear`, `modeling_eat.xares`): wall time and peak
memory for `--minutes` of audio (an hour by default), scene embeddings and timestamp embeddings at each hop of
`--hops_ms`.

The audio goes in as the harnesses pass it: calls of `[1, n_samples]` sounds of `--sound_minutes` each (10 min,
X-ARES's longest) until `--minutes` are done, noise in [-1, 1]. The model is EAT-Base with random weights unless
`--model_name_or_path` names one (the time of a forward pass does not depend on the weights). Each case runs in a
fresh process, so that its peak resident memory is its own: the interpreter, torch, the model and the work.

    python benchmarks/bench_harness.py --num_threads 2 --json harness.json       # EAT-Base, one hour, 160 / 40 ms
    python benchmarks/bench_harness.py --smoke --json smoke.json                  # tiny, a few seconds (CI)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import PeakMemory, apply_threads, benchmark_parser, machine_info, print_table, write_json


SAMPLING_RATE = 16000
FULL = {"preset": "base", "minutes": 60.0, "sound_minutes": 10.0, "hops_ms": [160.0, 40.0]}
SMOKE = {"preset": "tiny", "minutes": 0.5, "sound_minutes": 0.25, "hops_ms": [160.0, 40.0]}


def run_case(model_name_or_path: str, kind: str, hop_ms: float, minutes: float, sound_minutes: float,
             batch_size: int) -> dict:
    """One case in this process: embeds `minutes` of noise in calls of one `sound_minutes` sound."""
    from modeling_eat.inference.embeddings import load_embedder

    embedder = load_embedder(model_name_or_path, device="cpu", timestamp_hop_ms=hop_ms, batch_size=batch_size)
    sound_samples = int(sound_minutes * 60 * SAMPLING_RATE)
    calls = max(1, round(minutes / sound_minutes))
    generator = torch.Generator().manual_seed(0)
    seconds, outputs = 0.0, 0
    load_before = os.getloadavg()[0]
    with PeakMemory() as memory:
        for _ in range(calls):
            audio = torch.rand(1, sound_samples, generator=generator) * 2 - 1
            start = time.perf_counter()
            if kind == "scene":
                embeddings = embedder.scene_embeddings(audio)
            else:
                embeddings, _ = embedder.timestamp_embeddings(audio)
            seconds += time.perf_counter() - start
            outputs += embeddings.shape[-2] if kind == "timestamp" else 1
    audio_seconds = calls * sound_samples / SAMPLING_RATE
    return {
        "kind": kind, "hop_ms": hop_ms if kind == "timestamp" else None, "audio_minutes": audio_seconds / 60,
        "wall_s": seconds, "audio_s_per_s": audio_seconds / seconds, "peak_mib": memory.peak_mib,
        "embeddings": outputs, "threads": torch.get_num_threads(),
        # The 1-minute load average before and after: other jobs on the machine slow every figure down.
        "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--model_name_or_path", default=None, help="an EAT folder (default: random EAT-Base)")
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--sound_minutes", type=float, default=None)
    parser.add_argument("--hops_ms", type=float, nargs="+", default=None)
    parser.add_argument("--per_device_eval_batch_size", "--batch_size", dest="batch_size", type=int, default=8,
                        help="windows per forward pass")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = apply_threads(args.threads)
    settings = dict(SMOKE if args.smoke else FULL)
    for key in ("minutes", "sound_minutes", "hops_ms"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.case:
        kind, hop = args.case.split(":")
        print(json.dumps(run_case(args.model_name_or_path, kind, float(hop), settings["minutes"],
                                  settings["sound_minutes"], args.batch_size)))
        return
    machine = machine_info()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        from common import save_random_encoder

        model = args.model_name_or_path or str(save_random_encoder(Path(scratch) / "model", settings["preset"]))
        cases = [("scene", settings["hops_ms"][0])] + [("timestamp", hop) for hop in settings["hops_ms"]]
        for kind, hop in cases:
            command = [sys.executable, __file__, "--case", f"{kind}:{hop}", "--model_name_or_path", model,
                       "--threads", str(threads), "--minutes", str(settings["minutes"]),
                       "--sound_minutes", str(settings["sound_minutes"]), "--batch_size", str(args.batch_size)]
            completed = subprocess.run(command, capture_output=True, text=True, check=False)
            if completed.returncode != 0:
                raise RuntimeError(f"case {kind}:{hop} failed:\n{completed.stderr[-3000:]}")
            results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
            print(results[-1], flush=True)
    print_table(results, ["kind", "hop_ms", "audio_minutes", "wall_s", "audio_s_per_s", "peak_mib", "embeddings",
                          "load_before", "load_after"],
                f"embeddings of {settings['minutes']:g} min of audio, {threads} threads")
    write_json(args.json, machine, {**settings, "model": args.model_name_or_path or f"random {settings['preset']}",
                                    "batch_size": args.batch_size}, results)


if __name__ == "__main__":
    main()
