"""Shared pieces of the benchmark scripts: command line, timing, peak memory, machine facts, table and JSON output.

Every script records where and with what it ran (`machine_info`), times each case a few times and reports the median
and the best (the machines these run on are often shared with other jobs, so one timing alone says little), and
writes its rows to `--json PATH` when asked.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # Run as `python benchmarks/x.py` from a checkout, without the package installed.
    sys.path.insert(0, str(REPO_ROOT))

SAMPLING_RATE = 16000
# One 10 s clip as EAT and AST take it: 1024 Kaldi fbank frames of 128 mel bins.
CLIP_FRAMES = 1024
NUM_MEL_BINS = 128
KERNEL_FLAGS = {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                "amx_int8", "amx_bf16"}


def benchmark_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: `--smoke`, `--json`, `--threads`, `--repeats`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes that run in seconds (checks the script)")
    parser.add_argument("--json", type=Path, help="write the settings, machine facts and results to this file")
    parser.add_argument(
        "--num_threads", "--threads", dest="threads", type=int, default=None,
        help="torch intra-op threads (default: what torch picks, all cores)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case; median and best are reported")
    return parser


def apply_threads(threads: int | None) -> int:
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_family_model() -> str | None:
    """"family F model M stepping S" of the CPU: the generation behind a vague model name such as "AMD EPYC"."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("cpu family", "model", "stepping") and key.strip() not in fields:
                fields[key.strip()] = value.strip()
            if not line.strip():
                break
    except OSError:
        return None
    if not fields:
        return None
    return f"family {fields.get('cpu family')} model {fields.get('model')} stepping {fields.get('stepping')}"


def machine_info() -> dict:
    """Date, software versions, CPU, threads, load and GPU of this run."""
    import numpy
    import transformers

    from modeling_eat.runtime import cpu_flags, int8_instruction_set

    flags = cpu_flags()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "cpu": cpu_model(),
        "cpu_family_model": cpu_family_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # The flags that decide which float and int8 kernels ONNX Runtime (MLAS) and oneDNN pick on this CPU.
        "cpu_kernel_flags": sorted(flags & KERNEL_FLAGS),
        "int8_instructions": int8_instruction_set(flags),
        **gpu_info(),
    }
    if hasattr(os, "getloadavg"):
        # Other jobs on the machine slow every figure down; the 1-minute load at the start says how busy it was.
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_calls(run: Callable[[], object], repeats: int, warmup: int = 1, device="cpu") -> dict:
    """Seconds per call of `run`: `warmup` untimed calls, then `repeats` timed ones; median, best and all."""
    for _ in range(warmup):
        run()
    synchronize(device)
    seconds = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return {"median_s": statistics.median(seconds), "best_s": min(seconds), "all_s": seconds}


BUSY_LOOP = """
import time
period, duty = 0.1, {duty}
while True:
    end = time.perf_counter() + period * duty
    while time.perf_counter() < end:
        pass
    if duty < 1:
        time.sleep(period * (1 - duty))
"""


def start_competitors(count: int, duty: float) -> list[subprocess.Popen]:
    """`count` processes each busy `duty` of every 100 ms, standing in for other jobs on a shared machine."""
    code = BUSY_LOOP.format(duty=duty)
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
    for process in processes:
        process.wait()


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak resident memory of this process inside a `with` block, in MiB (`peak_mib`, and `rise_mib` over the
    resident size at its start).

    On Linux the kernel's high-water mark is reset on entry (`/proc/self/clear_refs`), so successive blocks are
    measured separately; elsewhere the process-wide maximum (`ru_maxrss`) is all there is, which never goes down.
    Tensors allocated by torch count, unlike with `tracemalloc`, which sees only Python's own allocator.
    """

    def __enter__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        self.start_kib = _status_kib("VmRSS") or 0
        return self

    def __exit__(self, *exc):
        peak_kib = _status_kib("VmHWM") if self.resettable else None
        if peak_kib is None:
            # ru_maxrss is KiB on Linux, bytes on macOS.
            scale = 1024 if sys.platform == "darwin" else 1
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale
        self.peak_mib = peak_kib / 1024
        self.rise_mib = max(0, peak_kib - self.start_kib) / 1024
        return False


def _convolution_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                               _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    # Each gradient of a convolution (input, weight) costs what its forward costs. torch's own formula (2.13) counts
    # the weight gradient of a grouped convolution as if it were ungrouped, `groups` times too much: 16x for EAT's
    # decoder, which would make it look far faster than it is.
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flops_of(run: Callable[[], object]) -> int:
    """Floating-point operations of one call of `run` (forward and backward if it runs one), as
    `torch.utils.flop_counter` counts them: matmuls, convolutions, attention; elementwise work is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten.convolution_backward: _convolution_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        run()
    return counter.get_total_flops()


def save_random_encoder(folder: Path, preset: str) -> Path:
    """A random-weight `EATModel` of `preset` with the AudioSet feature extractor, saved to `folder`."""
    from modeling_eat import EATConfig, EATFeatureExtractor, EATModel

    torch.manual_seed(0)
    EATModel(EATConfig.from_preset(preset)).save_pretrained(folder)
    EATFeatureExtractor.from_preset("audioset").save_pretrained(folder)
    return folder


def format_number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def print_table(rows: Sequence[dict], columns: Sequence[str], title: str | None = None) -> None:
    """Rows of dicts as a fixed-width text table of the named columns."""
    if title:
        print(f"\n{title}")
    cells = [[format_number(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)))
    print("  ".join("-" * width for width in widths))
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)))


def write_json(path: Path | None, machine: dict, settings: dict, results: Sequence[dict], **extra) -> None:
    """`{"machine": ..., "command": ..., "settings": ..., "results": [...], **extra}` to `path` (nothing when None).

    `machine` is `machine_info()` taken when the run started, so its load average is the one the timings saw.
    """
    if path is None:
        return
    payload = {"machine": machine, "command": command_line(), "settings": settings, "results": list(results), **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")


def command_line() -> str:
    """The command that produced the results, for the JSON (paths as typed)."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def gpu_info() -> dict:
    """GPU name (None without CUDA), CUDA and cuDNN versions, GPU memory, and whether fp32 matmuls may use TF32."""
    info = {"gpu": None, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info.update(
            gpu=properties.name,
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            gpu_capability=f"{properties.major}.{properties.minor}",
            gpu_count=torch.cuda.device_count(),
            cudnn=torch.backends.cudnn.version(),
            # "highest" = true fp32 matmuls; fp32 figures on a GPU mean little without knowing this.
            float32_matmul_precision=torch.get_float32_matmul_precision(),
        )
    return info


def failure_status(error: BaseException) -> str:
    """A failed row's status, one line for the table: "out of memory: ..." or "error: <type>: <first line>"."""
    message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in message.lower():
        return f"out of memory: {message}"
    return f"error: {type(error).__name__}: {message}"
