"""How EAT inference time and memory grow with the clip length (1 s ... 60 s), batch 1.

EAT-Base (random weights, 527 labels) on Kaldi fbank frames of each length, cut to whole 16-frame patches as the
pre-training crop is (`crop_num_frames`): 8 tokens per 0.16 s, so 60 s is 2992 patches + CLS. Reports latency and the
process's peak resident memory while the clip runs. Attention work grows with the square of the length; with sdpa
its memory should not, with eager (`--attention sdpa,eager`) the full attention matrix is materialised.

Usage:
    python benchmarks/bench_scaling.py [--smoke] [--json results.json] [--seconds 1,5,10,30,60]
"""

import torch

from modeling_eat import EATConfig, EATForAudioClassification
from modeling_eat.audio import crop_num_frames

from common import (
    NUM_MEL_BINS,
    PeakMemory,
    apply_threads,
    benchmark_parser,
    machine_info,
    print_table,
    time_calls,
    write_json,
)


# Past this length one timed call is enough: it lasts seconds, and the machine's time is better spent elsewhere.
LONG_CLIP_SECONDS = 10


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seconds", default="1,5,10,30,60", help="comma-separated clip lengths in seconds")
    parser.add_argument("--attention", default="sdpa", help="comma-separated attention implementations")
    parser.add_argument("--preset", default="base", help="model size: base, large or tiny")
    args = parser.parse_args()
    apply_threads(args.threads)
    lengths = [float(value) for value in args.seconds.split(",")]
    if args.smoke:
        args.preset, lengths, args.repeats = "tiny", [1.0, 2.0], 1
    machine = machine_info()
    print(f"{machine['cpu']}, {machine['torch_threads']} threads, torch {machine['torch']}, load "
          f"{machine.get('load_average_1min')}; EAT-{args.preset}, fp32, batch 1; median of {args.repeats} timed "
          f"calls up to {LONG_CLIP_SECONDS} s clips, one beyond")

    results = []
    for attention in args.attention.split(","):
        config = EATConfig.from_preset(args.preset, num_labels=527)
        model = EATForAudioClassification._from_config(config, attn_implementation=attention).eval()
        with torch.inference_mode():
            # Warms up threads and the allocator once, so the first length is not charged for it.
            model(torch.randn(1, crop_num_frames(min(lengths)), NUM_MEL_BINS))
            for seconds in lengths:
                frames = crop_num_frames(seconds)
                inputs = torch.randn(1, frames, NUM_MEL_BINS)
                repeats = args.repeats if seconds <= LONG_CLIP_SECONDS else 1
                with PeakMemory() as memory:
                    timing = time_calls(lambda: model(inputs), repeats=repeats, warmup=0)
                results.append({
                    "attention": attention, "seconds": seconds, "frames": frames,
                    "tokens": 1 + frames // config.patch_size * config.num_freq_patches,
                    "latency_s": timing["median_s"], "best_latency_s": timing["best_s"],
                    "timings_s": timing["all_s"], "peak_rss_mib": memory.peak_mib, "rise_mib": memory.rise_mib,
                })
                print(f"  {attention} {seconds:g} s: {timing['median_s']:.2f} s, peak {memory.peak_mib:.0f} MiB",
                      flush=True)
        model = None  # frees the weights before the next variant is built
    shortest = {row["attention"]: row for row in reversed(results)}
    for row in results:
        base = shortest[row["attention"]]
        row["latency_per_audio_second"] = row["latency_s"] / row["seconds"]
        row["time_vs_shortest"] = row["latency_s"] / base["latency_s"]
    print_table(results, ["attention", "seconds", "frames", "tokens", "latency_s", "best_latency_s",
                          "latency_per_audio_second", "time_vs_shortest", "peak_rss_mib", "rise_mib"],
                "latency and memory vs clip length")
    write_json(args.json, machine, {**vars(args), "json": str(args.json), "lengths": lengths}, results)


if __name__ == "__main__":
    main()
