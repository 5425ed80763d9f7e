"""Inference speed of EATForAudioClassification against transformers' ASTForAudioClassification, same process.

Both models are built at their default (Base) sizes with 527 labels and random weights (speed does not depend on the
weights), and take the same 10 s input: 1024 fbank frames x 128 mel bins. EAT turns it into 512 patches + CLS, AST
into 1212 overlapping patches + 2 tokens (1214).

Sections (`--sections`, default all):
- flops: matmul/conv FLOPs of one clip through each model (`FlopCounterMode` on the meta device: instant).
- throughput: clips/s at `--batch`, for each attention implementation (eager, sdpa, flash_attention_2 where
  installed) and dtype (fp32; bf16 too on GPU, or with `--dtypes fp32,bf16`), and the ratio EAT/AST.
  A matmul probe says how fast this device runs bf16 against fp32 (CPUs without bf16 instructions emulate it).
- latency: one clip (batch 1) on `--latency-threads` threads, fp32, sdpa: milliseconds per clip, EAT vs AST.
- compile: `torch.compile` of EAT (and AST with `--compile-ast`): graph breaks (`torch._dynamo.explain`, with and
  without `output_hidden_states`), time of the first call (compilation), steady-state speed against eager, and what a
  new batch size costs (recompilations counted).

Usage:
    python benchmarks/bench_inference.py [--smoke] [--json results.json] [--sections throughput,latency,compile]
"""

import time

import torch

from common import (
    CLIP_FRAMES,
    NUM_MEL_BINS,
    apply_threads,
    benchmark_parser,
    flops_of,
    machine_info,
    print_table,
    synchronize,
    time_calls,
    write_json,
)


NUM_LABELS = 527
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# The smoke sizes: both models 3 blocks of width 64 (EAT's `tiny` preset) on 128 frames, so every path runs in seconds.
AST_SMOKE_SIZES = {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 256}
SMOKE_FRAMES = 128


def build_model(name: str, attention: str, smoke: bool):
    if name == "EAT":
        from modeling_eat import EATConfig, EATForAudioClassification

        config = EATConfig.from_preset("tiny" if smoke else "base", num_labels=NUM_LABELS)
        model = EATForAudioClassification._from_config(config, attn_implementation=attention)
    else:
        from transformers import ASTConfig, ASTForAudioClassification

        overrides = {**AST_SMOKE_SIZES, "max_length": SMOKE_FRAMES} if smoke else {}
        config = ASTConfig(num_labels=NUM_LABELS, **overrides)
        model = ASTForAudioClassification._from_config(config, attn_implementation=attention)
    return model.eval()


def attention_available(attention: str, device: torch.device) -> str | None:
    """None when the implementation can run here, else why not."""
    if attention == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if device.type != "cuda":
            return "needs a CUDA GPU"
        if not is_flash_attn_2_available():
            return "flash-attn not installed"
    return None


def matmul_probe(device: torch.device, size: int) -> list[dict]:
    """GFLOP/s of a square matmul in fp32 and bf16: whether bf16 is worth measuring on this device at all."""
    rows = []
    for dtype_name, dtype in DTYPES.items():
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        timing = time_calls(lambda: a @ b, repeats=3, device=device)
        rows.append({"dtype": dtype_name, "size": size, "gflop_per_s": 2 * size**3 / timing["best_s"] / 1e9})
    return rows


def clips_per_second(model, batch: int, frames: int, dtype, device, repeats: int) -> dict:
    inputs = torch.randn(batch, frames, NUM_MEL_BINS, device=device, dtype=dtype)
    with torch.inference_mode():
        timing = time_calls(lambda: model(inputs), repeats=repeats, device=device)
    return {
        "clips_per_s": batch / timing["median_s"],
        "best_clips_per_s": batch / timing["best_s"],
        "ms_per_clip": 1000 * timing["median_s"] / batch,
        "timings_s": timing["all_s"],
    }


def run_throughput(args, device, frames) -> list[dict]:
    rows = []
    for dtype_name in args.dtypes:
        for attention in args.attention:
            reason = attention_available(attention, device)
            for name in ("EAT", "AST"):
                row = {"section": "throughput", "model": name, "attention": attention, "dtype": dtype_name,
                       "batch": args.batch, "device": str(device)}
                if reason:
                    rows.append({**row, "status": f"not run: {reason}"})
                    continue
                model = build_model(name, attention, args.smoke).to(device=device, dtype=DTYPES[dtype_name])
                row.update(clips_per_second(model, args.batch, frames, DTYPES[dtype_name], device, args.repeats))
                rows.append({**row, "status": "ok"})
                print(f"  {name} {attention} {dtype_name}: {row['clips_per_s']:.3f} clips/s", flush=True)
                del model
            add_ratio(rows[-2:], "clips_per_s", "EAT/AST clips/s")
    return rows


def add_ratio(pair: list[dict], key: str, label: str) -> None:
    eat, ast = pair
    if eat.get(key) and ast.get(key):
        eat[label] = eat[key] / ast[key]


def run_latency(args, device, frames) -> list[dict]:
    threads_before = torch.get_num_threads()
    threads = apply_threads(args.latency_threads)
    rows = []
    for name in ("EAT", "AST"):
        model = build_model(name, "sdpa", args.smoke).to(device)
        result = clips_per_second(model, 1, frames, torch.float32, device, args.repeats)
        rows.append({"section": "latency", "model": name, "attention": "sdpa", "dtype": "fp32", "batch": 1,
                     "threads": threads, "device": str(device), "latency_ms": result["ms_per_clip"],
                     "best_latency_ms": 1000 / result["best_clips_per_s"], "timings_s": result["timings_s"]})
        print(f"  {name} latency: {result['ms_per_clip']:.0f} ms", flush=True)
        del model
    rows[0]["EAT/AST latency"] = rows[0]["latency_ms"] / rows[1]["latency_ms"]
    apply_threads(threads_before)
    return rows


def explain_graph_breaks(model, inputs, **kwargs) -> dict:
    import torch._dynamo

    torch._dynamo.reset()
    with torch.inference_mode():
        explanation = torch._dynamo.explain(model)(inputs, **kwargs)
    reasons = []
    for reason in explanation.break_reasons:
        frame = reason.user_stack[-1] if reason.user_stack else None
        where = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame is not None else ""
        reasons.append(reason.reason.splitlines()[0][:200] + where)
    return {"graphs": explanation.graph_count, "graph_breaks": explanation.graph_break_count,
            "break_reasons": reasons}


def run_flops(args, frames) -> list[dict]:
    """Matmul/conv FLOPs of one clip through each model, counted on the meta device (nothing is computed)."""
    rows = []
    for name in ("EAT", "AST"):
        with torch.device("meta"):
            model = build_model(name, "sdpa", args.smoke)
            inputs = torch.randn(1, frames, NUM_MEL_BINS)
            with torch.no_grad():
                flops = flops_of(lambda: model(inputs))
        rows.append({"section": "flops", "model": name, "batch": 1, "gflop_per_clip": flops / 1e9})
    rows[0]["EAT/AST flops"] = rows[0]["gflop_per_clip"] / rows[1]["gflop_per_clip"]
    return rows


def run_compile(args, device, frames) -> list[dict]:
    """Compiles one model at a time and times: the first call, the steady state, and a call at a new batch size."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    backend = "inductor"
    rows = []
    for name in ["EAT"] + (["AST"] if args.compile_ast else []):
        model = build_model(name, "sdpa", args.smoke).to(device)
        inputs = torch.randn(args.batch, frames, NUM_MEL_BINS, device=device)
        row = {"section": "compile", "model": name, "attention": "sdpa", "dtype": "fp32", "batch": args.batch,
               "device": str(device), "backend": backend}
        row["explain"] = explain_graph_breaks(model, inputs)
        # transformers installs its output-capturing hooks on the first call that asks for hidden states, under a
        # threading lock dynamo cannot trace: that call breaks the graph, later ones do not.
        row["explain_output_hidden_states_first_call"] = explain_graph_breaks(model, inputs, output_hidden_states=True)
        row["explain_output_hidden_states_later_calls"] = explain_graph_breaks(
            model, inputs, output_hidden_states=True
        )
        eager = clips_per_second(model, args.batch, frames, torch.float32, device, args.repeats)
        row["eager_clips_per_s"] = eager["clips_per_s"]
        if args.smoke:
            # The smoke run checks the graph-break analysis only; compiling would double its time.
            rows.append({**row, "status": "ok"})
            continue

        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(model, backend=backend)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled(inputs)
            synchronize(device)
            row["first_call_s"] = time.perf_counter() - start
            timing = time_calls(lambda: compiled(inputs), repeats=args.repeats, warmup=0, device=device)
            row["compiled_clips_per_s"] = args.batch / timing["median_s"]
            row["compiled/eager"] = row["compiled_clips_per_s"] / row["eager_clips_per_s"]
            # A batch size the compiled graph has not seen: dynamo recompiles, then treats the batch as dynamic.
            graphs_before = counters["stats"]["unique_graphs"]
            other_batch = torch.randn(args.batch + 1, frames, NUM_MEL_BINS, device=device)
            start = time.perf_counter()
            compiled(other_batch)
            synchronize(device)
            row["new_batch_first_call_s"] = time.perf_counter() - start
            row["recompilations_for_new_batch"] = counters["stats"]["unique_graphs"] - graphs_before
        row["status"] = "ok"
        print(f"  {name} compiled: first call {row['first_call_s']:.1f} s, "
              f"{row['compiled_clips_per_s']:.3f} vs eager {row['eager_clips_per_s']:.3f} clips/s", flush=True)
        rows.append(row)
        del model, compiled
        torch._dynamo.reset()
    return rows


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--sections", default="flops,throughput,latency,compile",
                        help="comma-separated: flops, throughput, latency, compile")
    parser.add_argument("--batch", type=int, default=None, help="clips per call (default: 2 on CPU, 64 on GPU)")
    parser.add_argument("--attention", default="eager,sdpa,flash_attention_2",
                        help="attention implementations to compare")
    parser.add_argument("--dtypes", default=None, help="comma-separated fp32, bf16 (default: fp32 on CPU, both on GPU)")
    parser.add_argument("--latency-threads", type=int, default=2, help="threads of the one-clip latency case")
    parser.add_argument("--compile-ast", action="store_true", help="also compile AST (slow on CPU)")
    args = parser.parse_args()
    apply_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.batch = args.batch or (64 if device.type == "cuda" else 2)
    args.dtypes = (args.dtypes or ("fp32,bf16" if device.type == "cuda" else "fp32")).split(",")
    args.attention = args.attention.split(",")
    sections = args.sections.split(",")
    unknown = set(sections) - {"flops", "throughput", "latency", "compile"} | set(args.dtypes) - set(DTYPES)
    if unknown:
        raise ValueError(f"unknown --sections or --dtypes entries {sorted(unknown)}")
    if args.smoke:
        args.batch, args.repeats = 2, 1
    frames = SMOKE_FRAMES if args.smoke else CLIP_FRAMES
    machine = machine_info()
    print(f"{machine['cpu']}, {machine['torch_threads']} threads, torch {machine['torch']}, transformers "
          f"{machine['transformers']}, load {machine.get('load_average_1min')}; {frames} frames per clip, "
          f"median of {args.repeats} timed calls after one warm-up")

    probe = matmul_probe(device, 256 if args.smoke else 1024)
    print_table(probe, ["dtype", "size", "gflop_per_s"], "matmul probe")
    results = []
    if "flops" in sections:
        rows = run_flops(args, frames)
        results += rows
        print_table(rows, ["model", "gflop_per_clip", "EAT/AST flops"], "FLOPs per clip (forward)")
    if "throughput" in sections:
        rows = run_throughput(args, device, frames)
        results += rows
        print_table(rows, ["model", "attention", "dtype", "batch", "clips_per_s", "best_clips_per_s", "ms_per_clip",
                           "EAT/AST clips/s", "status"], f"throughput, batch {args.batch}")
    if "latency" in sections:
        rows = run_latency(args, device, frames)
        results += rows
        print_table(rows, ["model", "threads", "latency_ms", "best_latency_ms", "EAT/AST latency"],
                    "one-clip latency (fp32, sdpa)")
    if "compile" in sections:
        rows = run_compile(args, device, frames)
        results += rows
        print_table(rows, ["model", "backend", "batch", "first_call_s", "eager_clips_per_s", "compiled_clips_per_s",
                           "compiled/eager", "new_batch_first_call_s", "recompilations_for_new_batch"],
                    "torch.compile")
        for row in rows:
            for key in ("explain", "explain_output_hidden_states_first_call",
                        "explain_output_hidden_states_later_calls"):
                print(f"{row['model']} {key}: {row[key]}")
    write_json(args.json, machine, {**vars(args), "json": str(args.json), "frames": frames}, results,
               matmul_probe=probe)


if __name__ == "__main__":
    main()
