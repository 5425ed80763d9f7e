"""One clip through the exported graphs of `python -m modeling_eat.export`: latency, peak memory and file size of
eager PyTorch, the fp32 ONNX graph and its int8 versions (dynamic and static quantization), in ONNX Runtime with the
package's session options (`modeling_eat.deployment.sessions`), on the same threads, in one process, taking turns.

Rows: the spectrogram graph (input_values -> logits) against the eager model, and the waveform graph (waveform ->
fbank -> logits) against `EATFeatureExtractor` + the eager model. A random-weight classifier of the `--size` preset
(EAT-Base by default) is saved, exported, quantized and checked against eager PyTorch first: weights do not change
the arithmetic, so the latency and size are those of a trained model (its accuracy is measured elsewhere: the
static graph is calibrated on random noise here, which is fine for timing only).

`--session_options` adds rows for the fp32 spectrogram graph under other ONNX Runtime settings (spinning off, as this
benchmark ran before; ONNX Runtime's default spinning; one thread; fewer graph optimisations), in the same turns.
`--kernels` adds one float32 MatMul of an EAT-Base layer's size in torch (MKL), numpy and ONNX Runtime (MLAS):
which library gets the faster kernels on this CPU, apart from the rest of the model.
`--competing N --duty D` starts N busy processes before timing (a shared machine). Peak memory is measured in a
fresh child process per row (load, then two runs), so that one row's freed memory does not hide the next one's.

    python benchmarks/bench_export.py --threads 2 --repeats 10 --json export.json
    python benchmarks/bench_export.py --threads 2 --session_options --competing 1 --duty 0.5 --json busy.json
    python benchmarks/bench_export.py --smoke --json smoke.json        # tiny model, 1 s clip
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import (
    SAMPLING_RATE,
    PeakMemory,
    apply_threads,
    benchmark_parser,
    machine_info,
    print_table,
    start_competitors,
    stop,
    write_json,
)


MIB = 2**20


def build_folders(work: Path, size: str, seconds: float, smoke: bool):
    """The random classifier, its graphs (fp32; int8 dynamic and static) and the clip; returns paths and arrays."""
    from modeling_eat import EATConfig, EATFeatureExtractor, EATForAudioClassification
    from modeling_eat.deployment.accuracy import graph_inputs
    from modeling_eat.deployment.export import export
    from modeling_eat.deployment.quantization import quantize_graph

    torch.manual_seed(0)
    model = EATForAudioClassification(EATConfig.from_preset(size, num_labels=527)).eval()
    extractor = EATFeatureExtractor()
    model.save_pretrained(work / "model")
    extractor.save_pretrained(work / "model")
    waveform = 0.1 * torch.randn(1, int(seconds * SAMPLING_RATE), generator=torch.Generator().manual_seed(1))
    noise = np.random.default_rng(2)
    calibration = [(0.1 * noise.standard_normal(int(seconds * SAMPLING_RATE))).astype(np.float32)
                   for _ in range(2 if smoke else 8)]
    graphs, export_seconds = {}, {}
    for with_extractor in (False, True):
        folder = work / ("waveform" if with_extractor else "spectrogram")
        start = time.perf_counter()
        export(work / "model", folder, "onnx", with_extractor, check_seconds=())
        export_seconds[with_extractor] = time.perf_counter() - start
        graphs[with_extractor, "fp32"] = folder / "model.onnx"
        methods = ("dynamic", "static") if not with_extractor else ("dynamic",)
        for method in methods:
            path = folder / f"model_int8_{method}.onnx"
            batches = list(graph_inputs(calibration, extractor, with_extractor)) if method == "static" else None
            quantize_graph(folder / "model.onnx", path, method, batches)
            graphs[with_extractor, f"int8 {method}"] = path
    return model, extractor, waveform, graphs, export_seconds


def session_variants(threads: int) -> dict:
    """ONNX Runtime settings other than the package's, for `--session_options`: (graph, name) -> (threads, options
    edit), the graph being "fp32" or "int8 dynamic"."""
    import onnxruntime

    from modeling_eat.runtime import decide_num_threads

    levels = onnxruntime.GraphOptimizationLevel
    rule = decide_num_threads(environ={})

    # Not the warning that an entry of the package's options is replaced: that is the point here.
    onnxruntime.set_default_logger_severity(3)

    def entries(**values):
        def edit(options):
            for key, value in values.items():
                options.add_session_config_entry(key, value)
        return edit

    def level(value):
        def edit(options):
            options.graph_optimization_level = value
        return edit

    return {
        ("fp32", "spinning within a run (stopped after it)"): (threads, entries(**{
            "session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"
        })),
        ("fp32", "spinning (ONNX Runtime's default)"): (threads, entries(**{
            "session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "0"
        })),
        ("fp32", "1 thread"): (1, None),
        ("fp32", f"the package's thread rule ({rule.num_threads} now)"): (rule.num_threads, None),
        ("fp32", "basic graph optimisations"): (threads, level(levels.ORT_ENABLE_BASIC)),
        ("fp32", "no graph optimisations"): (threads, level(levels.ORT_DISABLE_ALL)),
        # The int8 MatMul fusions (quantize the input + integer MatMul + rescale in one kernel) are "extended".
        ("int8 dynamic", "basic graph optimisations"): (threads, level(levels.ORT_ENABLE_BASIC)),
    }


def open_graph(path: Path, threads: int, edit=None):
    """A run function for the graph with the package's options (`edit` applied to them first), and its input's
    name."""
    import onnxruntime

    from modeling_eat.deployment.sessions import session_options

    options = session_options(threads)
    if edit is not None:
        edit(options)
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return (lambda array: session.run(None, {name: np.ascontiguousarray(array, dtype=np.float32)})), name


def eager_caller(model, extractor, with_extractor: bool, waveform: torch.Tensor, input_values: torch.Tensor):
    def spectrogram():
        with torch.no_grad():
            return model(input_values).logits

    def from_waveform():
        features = extractor(waveform[0], sampling_rate=SAMPLING_RATE, return_tensors="pt")
        with torch.no_grad():
            return model(**features).logits

    return from_waveform if with_extractor else spectrogram


def peak_memory(kind: str, path: Path, threads: int, seconds: float) -> dict:
    """Peak resident memory of a fresh process that loads `path` (a graph, or the model folder for the eager kinds)
    and runs the clip twice; MiB, also as the rise over the process after its imports."""
    command = [sys.executable, __file__, "--memory_probe", kind, str(path), "--threads", str(threads),
               "--seconds", str(seconds)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def memory_probe(kind: str, path: str, threads: int, seconds: float) -> None:
    """`peak_memory`'s child: kind "eager" (the model on input_values), "eager_waveform" (extractor + model) or
    "graph" (an ONNX graph, its extractor read from the graph's folder)."""
    from modeling_eat import EATFeatureExtractor, EATForAudioClassification

    waveform = 0.1 * torch.randn(1, int(seconds * SAMPLING_RATE), generator=torch.Generator().manual_seed(1))
    folder = Path(path) if kind != "graph" else Path(path).parent
    extractor = EATFeatureExtractor.from_pretrained(folder)
    input_values = extractor(waveform[0], sampling_rate=SAMPLING_RATE, return_tensors="pt")["input_values"]
    with PeakMemory() as memory:
        if kind == "graph":
            run, input_name = open_graph(Path(path), threads)
            array = (waveform if input_name == "waveform" else input_values).numpy()
            call = lambda: run(array)  # noqa: E731
        else:
            model = EATForAudioClassification.from_pretrained(folder).eval()
            call = eager_caller(model, extractor, kind == "eager_waveform", waveform, input_values)
        for _ in range(2):
            call()
    print(json.dumps({"peak_mib": round(memory.peak_mib, 1), "rise_mib": round(memory.rise_mib, 1)}))


def kernel_rows(threads: int, repeats: int, smoke: bool) -> list[dict]:
    """One float32 matrix product the size of an EAT-Base MLP layer on a 10 s clip ((512 x 768) @ (768 x 3072)),
    in torch (MKL's sgemm), numpy (its BLAS) and an ONNX Runtime MatMul (MLAS), taking turns on the same threads:
    which library's kernels this CPU gets, apart from everything else the model does."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rows_, inner, columns = (64, 64, 256) if smoke else (512, 768, 3072)
    rng = np.random.default_rng(0)
    left = rng.standard_normal((rows_, inner)).astype(np.float32)
    weight = rng.standard_normal((inner, columns)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(left.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows_, columns])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "matmul.onnx"
        onnx.save(model, str(path))
        run, _ = open_graph(path, threads)
    left_tensor, weight_tensor = torch.from_numpy(left), torch.from_numpy(weight)
    calls = {
        "torch (MKL)": lambda: torch.mm(left_tensor, weight_tensor),
        "numpy (" + np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"] + ")": lambda: left @ weight,
        "ONNX Runtime (MLAS)": lambda: run(left),
    }
    timings = {name: [] for name in calls}
    for call in calls.values():
        call(), call()
    for _ in range(max(3, 3 * repeats)):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - start)
    flops = 2 * rows_ * inner * columns
    torch_median = statistics.median(timings["torch (MKL)"])
    return [
        {"library": name, "median_ms": round(1000 * statistics.median(seconds), 2),
         "best_ms": round(1000 * min(seconds), 2), "gflops_best": round(flops / min(seconds) / 1e9, 1),
         "vs_torch": round(statistics.median(seconds) / torch_median, 3)}
        for name, seconds in timings.items()
    ]


def cpu_use_by_others(before, after, own_before: float, own_after: float, elapsed: float) -> dict:
    """CPUs' worth of time other processes used, and the share the hypervisor took (steal), over the timing."""
    from modeling_eat.runtime import affinity_cpu_ids, busy_cpus

    busy = busy_cpus(before["per_cpu"], after["per_cpu"], affinity_cpu_ids())
    own = (own_after - own_before) / elapsed if elapsed > 0 else 0.0
    total = sum(after["all"]) - sum(before["all"])
    steal = (after["all"][7] - before["all"][7]) / total if total > 0 and len(after["all"]) > 7 else None
    return {"other_busy_cpus": round(max(0.0, busy - own), 2),
            "steal_share": None if steal is None else round(steal, 4)}


def voluntary_switches() -> int:
    """Times this process's threads blocked and were woken again (the sum over /proc/self/task/*/status): a
    thread pool whose workers sleep between operators pays one wake-up each time."""
    total = 0
    for status in Path("/proc/self/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_sample() -> dict:
    from modeling_eat.runtime import read_cpu_times

    line = Path("/proc/stat").read_text().splitlines()[0].split() if Path("/proc/stat").exists() else ["cpu"]
    return {"per_cpu": read_cpu_times(), "all": [int(value) for value in line[1:9]]}


def main(argv=None):
    parser = benchmark_parser(__doc__)
    parser.add_argument("--size", default="base", help="size preset of the random classifier")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--session_options", action="store_true", help="also time other ONNX Runtime settings")
    parser.add_argument("--competing", type=int, default=0, help="busy processes to start for the measurement")
    parser.add_argument("--duty", type=float, default=1.0, help="share of the time each competitor is busy")
    parser.add_argument("--kernels", action="store_true",
                        help="also time one float32 MatMul in torch (MKL), numpy and ONNX Runtime (MLAS)")
    parser.add_argument("--memory_probe", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        return memory_probe(*args.memory_probe, args.threads or 1, args.seconds)
    if args.smoke:
        args.size, args.seconds, args.repeats = "tiny", 1.0, 2
    threads = apply_threads(args.threads)

    from modeling_eat.runtime import int8_instruction_set, own_cpu_seconds

    # EAT-Base's graphs take 1.3 GB: the folder goes when the measurement ends.
    scratch = tempfile.TemporaryDirectory(prefix="bench_export_")
    work = Path(scratch.name)
    model, extractor, waveform, graphs, export_seconds = build_folders(work, args.size, args.seconds, args.smoke)
    input_values = extractor(waveform[0], sampling_rate=SAMPLING_RATE, return_tensors="pt")["input_values"]

    # (graph, engine) -> (call, expected output or None, file or None)
    cases = {}
    for with_extractor in (False, True):
        graph_name = "waveform -> logits" if with_extractor else "input_values -> logits"
        eager = eager_caller(model, extractor, with_extractor, waveform, input_values)
        array = (waveform if with_extractor else input_values).numpy()
        cases[graph_name, "eager PyTorch"] = (eager, None)
        for (graph_with_extractor, engine), path in graphs.items():
            if graph_with_extractor == with_extractor:
                run, _ = open_graph(path, threads)
                cases[graph_name, f"ONNX Runtime {engine}"] = (lambda run=run, array=array: run(array)[0], path)
        if args.session_options and not with_extractor:
            for (engine, variant), (variant_threads, edit) in session_variants(threads).items():
                run, _ = open_graph(graphs[False, engine], variant_threads, edit)
                cases[graph_name, f"ONNX Runtime {engine}, {variant}"] = (
                    lambda run=run, array=array: run(array)[0], None
                )

    expected = {}
    for (graph_name, engine), (call, _) in cases.items():
        output = call()
        output = output.numpy() if isinstance(output, torch.Tensor) else output
        expected.setdefault(graph_name, output)
        cases[graph_name, engine] += (float(np.abs(output - expected[graph_name]).max()),)

    competitors = start_competitors(args.competing, args.duty)
    try:
        time.sleep(0.5 if args.smoke else 2.0)
        machine = machine_info()
        for call, *_ in cases.values():  # warm-up
            call(), call()
        timings = {key: [] for key in cases}
        switches = {key: [] for key in cases}
        keys = list(cases)
        before, own_before, started = cpu_sample(), own_cpu_seconds(), time.perf_counter()
        for round_index in range(max(1, args.repeats)):
            # Each round starts at another row, so that no row always runs after the same one.
            shift = round_index % len(keys)
            for key in keys[shift:] + keys[:shift]:
                switched, start = voluntary_switches(), time.perf_counter()
                cases[key][0]()
                timings[key].append(time.perf_counter() - start)
                switches[key].append(voluntary_switches() - switched)
        others = cpu_use_by_others(before, cpu_sample(), own_before, own_cpu_seconds(), time.perf_counter() - started)
        load_end = os.getloadavg()[0]
    finally:
        stop(competitors)

    rows = []
    for (graph_name, engine), (call, path, difference) in cases.items():
        median = statistics.median(timings[graph_name, engine])
        row = {
            "graph": graph_name, "engine": engine,
            "median_ms": round(1000 * median, 1), "best_ms": round(1000 * min(timings[graph_name, engine]), 1),
            "vs_eager": round(median / statistics.median(timings[graph_name, "eager PyTorch"]), 3),
            "max_abs_difference_vs_eager": difference,
            "wakeups_per_run": statistics.median(switches[graph_name, engine]),
            "file_mb": round(path.stat().st_size / MIB, 1) if path is not None else None,
        }
        fp32_key = (graph_name, "ONNX Runtime fp32")
        row["vs_fp32_graph"] = round(median / statistics.median(timings[fp32_key]), 3)
        # Each probe is a fresh process (seconds of imports): --smoke measures the first two rows only.
        if args.smoke and len(rows) >= 2:
            pass
        elif path is not None:
            row.update(peak_memory("graph", path, threads, args.seconds))
        elif engine == "eager PyTorch":
            kind = "eager_waveform" if "waveform" in graph_name else "eager"
            row.update(peak_memory(kind, work / "model", threads, args.seconds))
        rows.append(row)
    for graph_name in ("input_values -> logits", "waveform -> logits"):
        fp32_mb = next(row["file_mb"] for row in rows if (row["graph"], row["engine"]) == (graph_name,
                                                                                             "ONNX Runtime fp32"))
        for row in rows:
            if row["graph"] == graph_name and row["file_mb"] is not None:
                row["file_vs_fp32"] = round(row["file_mb"] / fp32_mb, 3)
    print_table(rows, ["graph", "engine", "median_ms", "best_ms", "vs_eager", "vs_fp32_graph", "file_mb",
                       "file_vs_fp32", "peak_mib", "wakeups_per_run", "max_abs_difference_vs_eager"],
                f"EAT-{args.size}, one {args.seconds:g} s clip, {threads} threads, {args.repeats} rounds")
    print(f"\nload average {machine.get('load_average_1min')} at the start, {load_end:.2f} at the end; other "
          f"processes used {others['other_busy_cpus']} CPUs, steal {others['steal_share']}; int8 instructions: "
          f"{int8_instruction_set()}")
    kernels = None
    if args.kernels:
        kernels = kernel_rows(threads, args.repeats, args.smoke)
        print_table(kernels, ["library", "median_ms", "best_ms", "gflops_best", "vs_torch"],
                    f"one float32 MatMul, {threads} threads (load {os.getloadavg()[0]:.2f})")
    scratch.cleanup()
    import onnxruntime

    machine["onnxruntime"] = onnxruntime.__version__
    write_json(args.json, machine, {"size": args.size, "seconds": args.seconds, "threads": threads,
                                    "repeats": args.repeats, "competing": args.competing, "duty": args.duty},
               rows, export_seconds={"spectrogram": export_seconds[False], "waveform": export_seconds[True]},
               load_average_end=load_end, kernels=kernels, **others)


if __name__ == "__main__":
    main()
