"""Latency of one 10 s clip: the ONNX graphs of `python -m modeling_eat.export` in ONNX Runtime against eager
PyTorch, on the same threads, in one process, taking turns.

Rows: the spectrogram graph (input_values -> logits) against the eager model, and the waveform graph (waveform ->
fbank -> logits) against `EATFeatureExtractor` + the eager model. A random-weight classifier of the `--size` preset
(EAT-Base by default; weights do not change the arithmetic) is saved, exported and checked first.

    python benchmarks/bench_export.py --threads 2 --repeats 10 --json export.json
    python benchmarks/bench_export.py --smoke --json smoke.json        # tiny model, 1 s clip
"""

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import SAMPLING_RATE, apply_threads, benchmark_parser, machine_info, print_table, write_json


def main(argv=None):
    parser = benchmark_parser(__doc__)
    parser.add_argument("--size", default="base", help="size preset of the random classifier")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.seconds, args.repeats = "tiny", 1.0, 2
    threads = apply_threads(args.threads)
    machine = machine_info()

    from modeling_eat import EATConfig, EATFeatureExtractor, EATForAudioClassification
    from modeling_eat.deployment.export import export, load_graph

    work = Path(tempfile.mkdtemp(prefix="bench_export_"))
    torch.manual_seed(0)
    model = EATForAudioClassification(EATConfig.from_preset(args.size, num_labels=527)).eval()
    extractor = EATFeatureExtractor()
    model.save_pretrained(work / "model")
    extractor.save_pretrained(work / "model")
    waveform = (0.1 * torch.randn(1, int(args.seconds * SAMPLING_RATE), generator=torch.Generator().manual_seed(1)))
    input_values = extractor(waveform[0], sampling_rate=SAMPLING_RATE, return_tensors="pt")["input_values"]

    def eager_spectrogram():
        with torch.no_grad():
            return model(input_values).logits

    def eager_waveform():
        features = extractor(waveform[0], sampling_rate=SAMPLING_RATE, return_tensors="pt")
        with torch.no_grad():
            return model(**features).logits

    rows = []
    for with_extractor, eager, inputs in ((False, eager_spectrogram, input_values), (True, eager_waveform, waveform)):
        started = time.perf_counter()
        report = export(work / "model", work / f"onnx_{with_extractor}", "onnx", with_extractor, check_seconds=())
        export_s = time.perf_counter() - started
        # No spinning: ONNX Runtime's busy-waiting threads would otherwise slow the eager turns down.
        run = load_graph(work / f"onnx_{with_extractor}" / report["graph"], num_threads=threads, spinning=False)
        array = inputs.numpy()
        difference = float(np.abs(run(array)[0] - eager().numpy()).max())
        timings = {"eager": [], "onnxruntime": []}
        for _ in range(2):  # warm-up
            eager(), run(array)
        for _ in range(max(1, args.repeats)):
            for name, call in (("eager", eager), ("onnxruntime", lambda: run(array))):
                start = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - start)
        eager_ms = 1000 * statistics.median(timings["eager"])
        ort_ms = 1000 * statistics.median(timings["onnxruntime"])
        rows.append({
            "graph": "waveform -> logits" if with_extractor else "input_values -> logits",
            "eager_ms": round(eager_ms, 1), "onnxruntime_ms": round(ort_ms, 1),
            "eager_best_ms": round(1000 * min(timings["eager"]), 1),
            "onnxruntime_best_ms": round(1000 * min(timings["onnxruntime"]), 1),
            "ort_vs_eager": round(ort_ms / eager_ms, 3), "max_abs_difference": difference,
            "export_s": round(export_s, 1),
        })
    print_table(rows, ["graph", "eager_ms", "onnxruntime_ms", "ort_vs_eager", "max_abs_difference", "export_s"],
                f"EAT-{args.size}, one {args.seconds:g} s clip, {threads} threads")
    write_json(args.json, machine, {"size": args.size, "seconds": args.seconds, "threads": threads,
                                    "repeats": args.repeats}, rows)


if __name__ == "__main__":
    main()
