"""Pre-training steps with 1, 2, ... intra-op threads, on an idle machine or under a CPU load this script starts
itself: the measurement behind `modeling_eat.runtime.choose_num_threads`.

The workload is the quickstart's pre-training step (`small` preset, 8 clips of 1 s x 16 clones, AdamW, EMA update).
`--competing N` starts N busy processes (each busy `--duty` of every 100 ms) before timing and ends them afterwards;
thread counts take turns round by round in this one process, so load changes hit all of them alike. Also reported:
what the thread rule chooses under that load, and the 1-minute load average next to the CPU time it measures.

`--script_steps N` also times the whole `python -m modeling_eat.pretrain` run the quickstart makes (its synthesised
data, `small`, N steps) under the same competitors: once per `--thread_counts` entry (`--num_threads T`; torch's own
default is one thread per core) and once as it chooses by itself (the rule).

Usage:
    python benchmarks/bench_threads.py [--smoke] [--json out.json] [--competing 2] [--duty 1.0] [--thread_counts 1,2]
        [--script_steps 60]
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from modeling_eat import EATConfig, EATForPreTraining
from modeling_eat.masking_eat import EATMaskGenerator
from modeling_eat.runtime import affinity_cpu_ids, cpus_busy_with_other_work, decide_num_threads

from common import benchmark_parser, machine_info, print_table, start_competitors, stop, write_json


def build_step(config: EATConfig, batch: int, num_frames: int):
    torch.manual_seed(0)
    model = EATForPreTraining(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    input_values = torch.randn(batch, num_frames, config.num_mel_bins, generator=generator)
    masks = EATMaskGenerator(config)(
        batch, num_frames // config.patch_size, config.num_mel_bins // config.patch_size, generator=generator
    )

    def step():
        loss = model(input_values, bool_masked_pos=masks).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.update_teacher()

    return step


def time_pretrain_script(data_dir: Path, output_dir: Path, steps: int, num_threads: int | None) -> dict:
    """Wall time of one quickstart-sized `python -m modeling_eat.pretrain` run, and the thread count it reports."""
    command = [
        sys.executable, "-m", "modeling_eat.pretrain", "--dataset_name", str(data_dir), "--config_name", "small",
        "--max_length_seconds", "1", "--per_device_train_batch_size", "8", "--max_train_steps", str(steps),
        "--learning_rate", "1e-3", "--output_dir", str(output_dir), "--overwrite_output_dir",
        "--logging_steps", "1000",
    ]
    if num_threads is not None:
        command += ["--num_threads", str(num_threads)]
    environ = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=environ)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    chosen = re.search(r"torch runs (\d+) intra-op thread", result.stderr)
    return {"num_threads_flag": num_threads, "threads_used": int(chosen.group(1)) if chosen else None,
            "wall_s": seconds, "steps": steps}


def script_rows(thread_counts: list[int], steps: int, smoke: bool) -> list[dict]:
    from modeling_eat.synthetic_audio import write_audiofolder

    with tempfile.TemporaryDirectory() as folder:
        data_dir = write_audiofolder(Path(folder) / "data", num_train_per_class=2 if smoke else 60,
                                     num_test_per_class=1)
        return [time_pretrain_script(data_dir, Path(folder) / "run", steps, threads)
                for threads in [*thread_counts, None]]


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--competing", type=int, default=0, help="busy processes to start for the measurement")
    parser.add_argument("--duty", type=float, default=1.0, help="share of the time each competitor is busy")
    parser.add_argument("--thread_counts", default="1,2", help="comma-separated intra-op thread counts to compare")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per thread count and round")
    parser.add_argument("--config_name", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--num_frames", type=int, default=96, help="frames per clip (96 = a 1 s crop)")
    parser.add_argument("--script_steps", type=int, default=0,
                        help="also time python -m modeling_eat.pretrain for N steps")
    args = parser.parse_args()
    thread_counts = [int(value) for value in args.thread_counts.split(",")]
    config = EATConfig.from_preset(args.config_name)
    if args.smoke:
        config = EATConfig.from_preset("tiny", clone_batch=2)
        args.steps, args.repeats, args.batch = 1, 1, 2

    competitors = start_competitors(args.competing, args.duty)
    try:
        # Let the competitors get going, as on a machine where other jobs already run.
        time.sleep(0.5 if args.smoke else 2.0)
        machine = machine_info()
        load_before = os.getloadavg()[0]
        measured_busy = cpus_busy_with_other_work(affinity_cpu_ids())
        rule = decide_num_threads(environ={})
        step = build_step(config, args.batch, args.num_frames)
        seconds = {threads: [] for threads in thread_counts}
        for _ in range(max(1, args.repeats)):
            for threads in thread_counts:
                torch.set_num_threads(threads)
                step()  # warm-up at this thread count
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                seconds[threads].append((time.perf_counter() - start) / args.steps)
        load_after = os.getloadavg()[0]
        scripts = script_rows(thread_counts, args.script_steps, args.smoke) if args.script_steps else []
    finally:
        stop(competitors)

    fastest = min(statistics.median(values) for values in seconds.values())
    rows = [
        {
            "competing": args.competing,
            "duty": args.duty,
            "threads": threads,
            "s_per_step": statistics.median(values),
            "best_s": min(values),
            "vs_fastest": statistics.median(values) / fastest,
            "all_s": values,
        }
        for threads, values in seconds.items()
    ]
    print_table(rows, ["competing", "duty", "threads", "s_per_step", "best_s", "vs_fastest"],
                title=f"{args.config_name} pre-training step, {args.batch} clips x {args.num_frames} frames")
    print(f"\nrule: {rule} | measured busy by others {measured_busy:.2f} CPUs | "
          f"1-min load average {load_before:.2f} at start, {load_after:.2f} at end")
    if scripts:
        print_table(scripts, ["num_threads_flag", "threads_used", "steps", "wall_s"],
                    title="modeling_eat.pretrain, quickstart settings (the flag's '-' is the rule)")
    write_json(
        args.json, machine, vars(args) | {"config": config.to_dict()}, rows,
        rule={"num_threads": rule.num_threads, "reason": rule.reason}, measured_busy_cpus=measured_busy,
        load_average_start=load_before, load_average_end=load_after, scripts=scripts,
    )


if __name__ == "__main__":
    main()
