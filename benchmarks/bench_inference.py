"""Inference speed of EATForAudioClassification against transformers' ASTForAudioClassification, same process.

Both models are built at their default (Base) sizes with 527 labels and random weights (speed does not depend on the
weights), and take the same 10 s input: 1024 fbank frames x 128 mel bins. EAT turns it into 512 patches + CLS, AST
into 1212 overlapping patches + 2 tokens (1214).

Precisions (`--dtypes`): `fp32`; `bf16` = the model cast to bfloat16 (`model.to(dtype=torch.bfloat16)`) fed bfloat16
input, the default way this benchmark runs bf16 inference; `bf16-autocast` = fp32 weights and input under
`torch.autocast(dtype=torch.bfloat16)` (matmuls in bf16, layer norms and residual sums kept in fp32).

Sections (`--sections`, default all):
- flops: matmul/conv FLOPs of one clip through each model (`FlopCounterMode` on the meta device: instant).
- throughput: clips/s at `--batch`, for each attention implementation and precision, and the ratio EAT/AST.
  Attention: eager, sdpa (PyTorch picks the kernel), `sdpa:flash` / `sdpa:efficient` / `sdpa:cudnn` / `sdpa:math`
  (sdpa restricted to one kernel with `torch.nn.attention.sdpa_kernel`), flash_attention_2 (the flash-attn package,
  where installed). A matmul probe says how fast this device runs bf16 against fp32 (CPUs without bf16 instructions
  emulate it). On a GPU each row also records the peak GPU memory.
- latency: one clip (batch 1) on `--latency-threads` threads, fp32, sdpa: milliseconds per clip, EAT vs AST.
- compile: `torch.compile` of `--compile-models`, one row per model and `--compile-variants` entry
  (precision:mode[+new-batch], e.g. `bf16:default`, `bf16-autocast:default`, `bf16:max-autotune-no-cudagraphs`;
  variant by variant, both models each). Each row holds the evidence for why compiled code is faster or slower than
  eager: graph breaks and the dtype every matmul/attention/norm op runs in (`torch._dynamo.explain` under the same
  precision), the first call (compilation; a variant compiled earlier in the run finds inductor's caches warm), the
  steady-state clips/s against eager at the same precision (CUDA-synchronized), recompilations during the steady
  state and their reasons (dynamo's `recompiles` log), the compiled output's dtype and distance from eager, dynamo's
  counters and, with `+new-batch`, what a new batch size costs and how fast the (then dynamic-shape) graph runs the
  original batch. A `compile_graph_breaks` row per model records the fp32 breaks (and, with
  `--explain-hidden-states`, those with `output_hidden_states`).

Time limits: `--budget-s` (default 330 s on GPU) stops starting new rows once spent, and no compilation runs past it
(nor past `--compile-timeout-s`); rows left out say so. Progress lines are printed as rows finish and the JSON is
rewritten after every section and compile row, so a run killed part-way keeps what it measured.

Usage:
    python benchmarks/bench_inference.py [--smoke] [--json results.json] [--sections throughput,latency,compile]
    python benchmarks/bench_inference.py --device cpu --dtypes fp32,bf16 --sections throughput
"""

import argparse
import contextlib
import copy
import logging
import signal
import sys
import time
import traceback

import torch

from common import (
    CLIP_FRAMES,
    NUM_MEL_BINS,
    apply_threads,
    benchmark_parser,
    failure_status,
    flops_of,
    machine_info,
    print_table,
    synchronize,
    time_calls,
    write_json,
)


NUM_LABELS = 527
# The dtype of the weights and input of each precision; `bf16-autocast` keeps them fp32 and lets autocast cast.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-autocast": torch.float32}
SECTIONS = ("flops", "throughput", "latency", "compile")
SDPA_BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION",
                 "math": "MATH"}
# The smoke sizes: both models 3 blocks of width 64 (EAT's `tiny` preset) on 128 frames, so every path runs in seconds.
AST_SMOKE_SIZES = {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 256}
SMOKE_FRAMES = 128
# What a run uses unless told otherwise. The smoke run takes the GPU's lists so that every GPU code path runs on CPU.
GPU_DEFAULTS = {
    "attention": "eager,sdpa,sdpa:flash,sdpa:cudnn,sdpa:efficient,flash_attention_2",
    "dtypes": "fp32,bf16,bf16-autocast",
    "compile_models": "EAT,AST",
    # In order of what matters most, as the time budget may cut the list short. The last one compiles the first
    # again, now with inductor's caches warm, and then feeds it a new batch size.
    "compile_variants": "bf16:default,bf16-autocast:default,bf16:max-autotune-no-cudagraphs,bf16:default+new-batch",
}
# The GPU's paths at the cost of seconds: one compiled model, the two precisions whose graphs differ.
SMOKE_DEFAULTS = {**GPU_DEFAULTS, "compile_models": "EAT",
                  "compile_variants": "bf16:default+new-batch,bf16-autocast:default"}
CPU_DEFAULTS = {
    "attention": "eager,sdpa,flash_attention_2",
    "dtypes": "fp32",
    "compile_models": "EAT",
    "compile_variants": "fp32:default+new-batch",
}
# Ops whose output dtype says in which precision the compiled graph does its heavy work.
COMPUTE_OPS = {"linear", "conv2d", "matmul", "bmm", "baddbmm", "scaled_dot_product_attention", "softmax",
               "layer_norm", "gelu", "add"}
CONVERSION_METHODS = {"to", "float", "half", "bfloat16", "type"}


class RunStopped(BaseException):
    """Raised by `deadline` inside a call that ran out of time. A BaseException, so that the broad `except Exception`
    blocks inside dynamo and inductor do not swallow it."""


def elapsed(args) -> float:
    return time.perf_counter() - args.start_time


def budget_left(args) -> float | None:
    return None if args.budget_s is None else args.budget_s - elapsed(args)


def progress(args, message: str) -> None:
    print(f"[{elapsed(args):6.1f} s] {message}", flush=True)


@contextlib.contextmanager
def deadline(seconds: float | None):
    """Raises `RunStopped` in the main thread once `seconds` have passed (no limit when None)."""
    if seconds is None or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise RunStopped(f"stopped after {seconds:.1f} s (time limit)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


def split_attention(attention: str) -> tuple[str, str | None]:
    """`"sdpa:flash"` -> (`"sdpa"`, `"flash"`): the implementation the model is built with, and the sdpa kernel."""
    implementation, _, sdpa_backend = attention.partition(":")
    return implementation, sdpa_backend or None


def attention_available(attention: str, device: torch.device) -> str | None:
    """None when the implementation can run here, else why not."""
    if attention == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if device.type != "cuda":
            return "needs a CUDA GPU"
        if not is_flash_attn_2_available():
            return "flash-attn not installed"
    return None


def precision_context(precision: str, device: torch.device, sdpa_backend: str | None = None):
    """Autocast for `bf16-autocast`, and the sdpa kernel restriction of `sdpa:<backend>` attention."""
    stack = contextlib.ExitStack()
    if precision == "bf16-autocast":
        stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
    if sdpa_backend is not None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        stack.enter_context(sdpa_kernel(getattr(SDPBackend, SDPA_BACKENDS[sdpa_backend])))
    return stack


def row_status(error: BaseException, sdpa_backend: str | None = None) -> str:
    message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    if sdpa_backend and ("No viable backend" in message or "No available kernel" in message):
        return f"not run: sdpa kernel {sdpa_backend!r} cannot run this device/dtype ({message})"
    if isinstance(error, RunStopped):
        return message  # "stopped after ...": what the row measured before is kept
    return failure_status(error)


def release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def matmul_probe(device: torch.device, size: int) -> list[dict]:
    """GFLOP/s of a square matmul in fp32 and bf16: whether bf16 is worth measuring on this device at all."""
    rows = []
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        timing = time_calls(lambda: a @ b, repeats=3, device=device)
        rows.append({"dtype": dtype_name, "size": size, "gflop_per_s": 2 * size**3 / timing["best_s"] / 1e9})
    return rows


def clips_per_second(model, batch: int, frames: int, dtype, device, repeats: int, warmup: int = 1,
                     context=contextlib.nullcontext) -> dict:
    """Clips/s of `model` on a random batch; `context()` is entered around every call (autocast, sdpa kernel).

    The input is made outside `inference_mode`: an inference tensor has other dispatch keys, which a compiled
    model guards on, so mixing the two would recompile.
    """
    inputs = torch.randn(batch, frames, NUM_MEL_BINS, device=device, dtype=dtype)

    def run():
        with context():
            return model(inputs)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        timing = time_calls(run, repeats=repeats, warmup=warmup, device=device)
    result = {
        "clips_per_s": batch / timing["median_s"],
        "best_clips_per_s": batch / timing["best_s"],
        "ms_per_clip": 1000 * timing["median_s"] / batch,
        "timings_s": timing["all_s"],
    }
    if device.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run_throughput(args, device, frames) -> list[dict]:
    rows = []
    # fp32-weight precisions first, so that one built model serves them all before it is cast to bf16 in place.
    dtypes = sorted(args.dtypes, key=lambda name: DTYPES[name] != torch.float32)
    for attention in args.attention:
        implementation, sdpa_backend = split_attention(attention)
        reason = attention_available(implementation, device)
        for name in ("EAT", "AST"):
            model = None
            for dtype_name in dtypes:
                row = {"section": "throughput", "model": name, "attention": attention, "dtype": dtype_name,
                       "batch": args.batch, "device": str(device)}
                left = budget_left(args)
                if reason or (left is not None and left <= 0):
                    rows.append({**row, "status": f"not run: {reason or 'time budget (--budget-s) spent'}"})
                    continue
                try:
                    if model is None:
                        model = build_model(name, implementation, args.smoke).to(device)
                    model.to(dtype=DTYPES[dtype_name])
                    row.update(clips_per_second(
                        model, args.batch, frames, DTYPES[dtype_name], device, args.repeats, args.warmup,
                        context=lambda: precision_context(dtype_name, device, sdpa_backend),
                    ))
                    row["status"] = "ok"
                    progress(args, f"{name} {attention} {dtype_name} batch {args.batch}: "
                                   f"{row['clips_per_s']:.1f} clips/s")
                except Exception as error:
                    row["status"] = row_status(error, sdpa_backend)
                    progress(args, f"{name} {attention} {dtype_name}: {row['status']}")
                rows.append(row)
            del model
            release_memory(device)
    for row in rows:
        if row["model"] == "EAT":
            ast = next(other for other in rows if other["model"] == "AST"
                       and (other["attention"], other["dtype"]) == (row["attention"], row["dtype"]))
            add_ratio([row, ast], "clips_per_s", "EAT/AST clips/s")
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
        result = clips_per_second(model, 1, frames, torch.float32, device, args.repeats, args.warmup)
        rows.append({"section": "latency", "model": name, "attention": "sdpa", "dtype": "fp32", "batch": 1,
                     "threads": threads, "device": str(device), "latency_ms": result["ms_per_clip"],
                     "best_latency_ms": 1000 / result["best_clips_per_s"], "timings_s": result["timings_s"]})
        progress(args, f"{name} latency: {result['ms_per_clip']:.1f} ms")
        del model
    rows[0]["EAT/AST latency"] = rows[0]["latency_ms"] / rows[1]["latency_ms"]
    apply_threads(threads_before)
    return rows


def op_dtypes(graphs) -> dict:
    """`{op: {dtype: count}}` of the heavy ops in dynamo's graphs, from the fake tensors dynamo traced them with,
    and the number of dtype conversions (`.to`, `.float`, ...) the graphs contain."""
    summary, conversions = {}, 0
    for graph in graphs:
        for node in graph.graph.nodes:
            if node.op not in ("call_function", "call_method"):
                continue
            op = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
            if node.op == "call_method" and op in CONVERSION_METHODS:
                conversions += 1
            if op in COMPUTE_OPS:
                dtype = str(getattr(node.meta.get("example_value"), "dtype", None)).replace("torch.", "")
                summary.setdefault(op, {}).setdefault(dtype, 0)
                summary[op][dtype] += 1
    return {"ops": summary, "dtype_conversions": conversions}


def explain_graph_breaks(model, inputs, context=contextlib.nullcontext, with_dtypes: bool = False, **kwargs) -> dict:
    import torch._dynamo

    torch._dynamo.reset()
    with torch.inference_mode(), context():
        explanation = torch._dynamo.explain(model)(inputs, **kwargs)
    reasons = []
    for reason in explanation.break_reasons:
        frame = reason.user_stack[-1] if reason.user_stack else None
        where = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame is not None else ""
        reasons.append(reason.reason.splitlines()[0][:200] + where)
    result = {"graphs": explanation.graph_count, "graph_breaks": explanation.graph_break_count,
              "break_reasons": reasons}
    if with_dtypes:
        result.update(op_dtypes(explanation.graphs))
    torch._dynamo.reset()
    return result


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


class RecompileLog(logging.Handler):
    """Collects dynamo's `recompiles` log lines: each says which guard failed (shape, dtype, grad mode, ...)."""

    LOGGER = "torch._dynamo.guards.__recompiles"

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage()[:600])

    def __enter__(self):
        torch._logging.set_logs(recompiles=True)
        logging.getLogger(self.LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger(self.LOGGER).removeHandler(self)
        torch._logging.set_logs()
        return False


NEW_BATCH_SUFFIX = "+new-batch"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def parse_variants(text: str) -> list[tuple[str, str, bool]]:
    """`"bf16:default+new-batch,fp32"` -> `[("bf16", "default", True), ("fp32", "default", False)]`."""
    variants = []
    for entry in text.split(","):
        precision, _, mode = entry.partition(":")
        new_batch = mode.endswith(NEW_BATCH_SUFFIX)
        mode = mode.removesuffix(NEW_BATCH_SUFFIX) or "default"
        if precision not in DTYPES or mode not in COMPILE_MODES:
            raise ValueError(
                f"--compile-variants entry {entry!r}: write precision:mode[{NEW_BATCH_SUFFIX}] with precision one of "
                f"{', '.join(DTYPES)} and mode one of {', '.join(COMPILE_MODES)}, e.g. bf16:default{NEW_BATCH_SUFFIX}"
            )
        variants.append((precision, mode, new_batch))
    return variants


def graph_break_row(args, name, model, inputs) -> dict:
    row = {"section": "compile_graph_breaks", "model": name, "attention": "sdpa", "dtype": "fp32",
           "batch": args.batch}
    try:
        row["explain"] = explain_graph_breaks(model, inputs)
        if args.explain_hidden_states:
            # transformers installs its output-capturing hooks on the first call that asks for hidden states,
            # under a threading lock dynamo cannot trace: that call breaks the graph, later ones do not.
            row["explain_output_hidden_states_first_call"] = explain_graph_breaks(
                model, inputs, output_hidden_states=True
            )
            row["explain_output_hidden_states_later_calls"] = explain_graph_breaks(
                model, inputs, output_hidden_states=True
            )
        row["status"] = "ok"
    except Exception as error:
        row["status"] = row_status(error)
    progress(args, f"{name} graph breaks (fp32): {row.get('explain', row['status'])}")
    return row


def run_compile(args, device, frames, save) -> list[dict]:
    """The fp32 graph-break analysis of each model, then one row per compile variant and model, variant by variant
    (so that when the time budget runs out, what is left out is the later variants, for both models alike)."""
    rows, models = [], {}
    for name in args.compile_models:
        model = build_model(name, "sdpa", args.smoke).to(device)
        models[name] = {torch.float32: model}
        rows.append(graph_break_row(args, name, model, torch.randn(args.batch, frames, NUM_MEL_BINS, device=device)))
    save(rows)
    for precision, mode, new_batch in args.compile_variants:
        for name in args.compile_models:
            dtype = DTYPES[precision]
            if dtype not in models[name]:
                models[name][dtype] = copy.deepcopy(models[name][torch.float32]).to(dtype=dtype)
            rows.append(compile_variant(args, device, frames, name, models[name][dtype], precision, mode, new_batch))
            save(rows)
    del models
    release_memory(device)
    return rows


def compile_variant(args, device, frames, name, model, precision, mode, new_batch: bool) -> dict:
    import torch._dynamo
    from torch._dynamo.utils import counters

    row = {"section": "compile", "model": name, "attention": "sdpa", "dtype": precision, "mode": mode,
           "new_batch": new_batch, "backend": args.compile_backend, "batch": args.batch, "device": str(device)}
    left = budget_left(args)
    if left is not None and left <= 0:
        row["status"] = "not run: time budget (--budget-s) spent"
        progress(args, f"{name} compile {precision} {mode}: {row['status']}")
        return row
    dtype = DTYPES[precision]
    inputs = torch.randn(args.batch, frames, NUM_MEL_BINS, device=device, dtype=dtype)

    def context():
        return precision_context(precision, device)

    limit = args.compile_timeout_s if left is None else min(left, args.compile_timeout_s or left)
    try:
        with deadline(limit):
            # What dynamo captures under this precision: breaks, and the dtype each matmul and attention runs in.
            row["explain"] = explain_graph_breaks(model, inputs, context, with_dtypes=True)
            eager = clips_per_second(model, args.batch, frames, dtype, device, args.repeats, args.warmup, context)
            row["eager_clips_per_s"] = eager["clips_per_s"]
            with torch.inference_mode(), context():
                eager_logits = model(inputs).logits.float()

            torch._dynamo.reset()
            counters.clear()
            # Mode presets (max-autotune, cudagraphs) are inductor options; other backends take no mode.
            options = {"mode": mode} if args.compile_backend == "inductor" else {}
            compiled = torch.compile(model, backend=args.compile_backend, **options)

            def call(batch_inputs):
                with context():
                    return compiled(batch_inputs)

            # Made here, outside inference_mode, like `inputs`: an inference tensor alone forces a recompilation.
            other_batch = torch.randn(args.batch + 1, frames, NUM_MEL_BINS, device=device, dtype=dtype)
            with RecompileLog() as recompiles, torch.inference_mode():
                start = time.perf_counter()
                call(inputs)
                synchronize(device)
                row["first_call_s"] = time.perf_counter() - start
                row["graphs_after_first_call"] = counters["stats"]["unique_graphs"]
                progress(args, f"{name} compile {precision} {mode}: first call {row['first_call_s']:.1f} s")
                # CUDA graphs (reduce-overhead) are recorded on the calls after the first: warm those up untimed.
                timing = time_calls(lambda: call(inputs), repeats=args.repeats, warmup=max(2, args.warmup),
                                    device=device)
                row["compiled_clips_per_s"] = args.batch / timing["median_s"]
                row["best_compiled_clips_per_s"] = args.batch / timing["best_s"]
                row["compiled/eager"] = row["compiled_clips_per_s"] / row["eager_clips_per_s"]
                row["recompilations_in_steady_state"] = (
                    counters["stats"]["unique_graphs"] - row["graphs_after_first_call"]
                )
                output = call(inputs).logits
                row["compiled_output_dtype"] = str(output.dtype).replace("torch.", "")
                row["max_abs_diff_vs_eager"] = (output.float() - eager_logits).abs().max().item()
                if new_batch:
                    # A batch size the compiled graph has not seen: dynamo recompiles, then treats the batch as
                    # dynamic; the original batch then runs on the dynamic-shape graph.
                    graphs_before = counters["stats"]["unique_graphs"]
                    start = time.perf_counter()
                    call(other_batch)
                    synchronize(device)
                    row["new_batch_first_call_s"] = time.perf_counter() - start
                    row["recompilations_for_new_batch"] = counters["stats"]["unique_graphs"] - graphs_before
                    timing = time_calls(lambda: call(inputs), repeats=args.repeats, warmup=args.warmup,
                                        device=device)
                    row["compiled_after_new_batch_clips_per_s"] = args.batch / timing["median_s"]
            row["recompile_reasons"] = recompiles.messages
            row["dynamo_counters"] = {group: dict(values) for group, values in counters.items()}
            row["status"] = "ok"
            progress(args, f"{name} compile {precision} {mode}: {row['compiled_clips_per_s']:.1f} compiled vs "
                           f"{row['eager_clips_per_s']:.1f} eager clips/s ({row['compiled/eager']:.2f}x), "
                           f"{row['explain']['graphs']} graph(s), {row['recompilations_in_steady_state']} "
                           "steady-state recompilations")
    except (Exception, RunStopped) as error:
        row["status"] = row_status(error)
        progress(args, f"{name} compile {precision} {mode}: {row['status']}")
        if not isinstance(error, RunStopped):
            traceback.print_exc()
    torch._dynamo.reset()
    release_memory(device)
    return row


def resolve_defaults(args) -> torch.device:
    """Fills in the options whose defaults depend on the device and on `--smoke`."""
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu (or auto)")
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    defaults = SMOKE_DEFAULTS if args.smoke else GPU_DEFAULTS if on_gpu else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.compile_ast and "AST" not in args.compile_models.split(","):
        args.compile_models += ",AST"
    args.batch = args.batch or (64 if on_gpu else 2)
    args.repeats = args.repeats or (10 if on_gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    if args.explain_hidden_states is None:
        args.explain_hidden_states = not on_gpu
    args.compile_backend = args.compile_backend or ("aot_eager" if args.smoke else "inductor")
    if args.budget_s is None:
        args.budget_s = 330.0 if on_gpu else (120.0 if args.smoke else None)
    if args.smoke:
        args.batch, args.repeats, args.warmup = 2, 1, 1
        # One thread: two threads on a machine busy with other jobs can make a tiny forward 100x slower.
        args.threads = args.threads or 1
    args.sections = args.sections.split(",")
    args.dtypes = args.dtypes.split(",")
    args.attention = args.attention.split(",")
    args.compile_models = args.compile_models.split(",")
    args.compile_variants = parse_variants(args.compile_variants)
    unknown = (set(args.sections) - set(SECTIONS)) | (set(args.dtypes) - set(DTYPES)) | (
        set(args.compile_models) - {"EAT", "AST"}
    )
    bad_attention = [a for a in args.attention if split_attention(a)[1] not in (None, *SDPA_BACKENDS)
                     or (split_attention(a)[1] and split_attention(a)[0] != "sdpa")]
    if unknown or bad_attention:
        raise ValueError(
            "unknown --sections, --dtypes, --compile-models or --attention entries "
            f"{sorted(unknown | set(bad_attention))}; "
            f"sections: {', '.join(SECTIONS)}; dtypes: {', '.join(DTYPES)}; models: EAT, AST; attention: eager, "
            f"sdpa, sdpa:<{'|'.join(SDPA_BACKENDS)}>, flash_attention_2"
        )
    return device


def main():
    parser = benchmark_parser(__doc__)
    parser.set_defaults(repeats=None)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the models run (auto: cuda when available)")
    parser.add_argument("--batch", type=int, default=None, help="clips per call (default: 2 on CPU, 64 on GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls before the timed ones "
                                                                 "(default: 1 on CPU, 3 on GPU)")
    parser.add_argument("--attention", default=None,
                        help=f"attention implementations (CPU default {CPU_DEFAULTS['attention']}; GPU default "
                             f"{GPU_DEFAULTS['attention']})")
    parser.add_argument("--dtypes", default=None,
                        help=f"comma-separated {', '.join(DTYPES)} (default: fp32 on CPU, {GPU_DEFAULTS['dtypes']} "
                             "on GPU)")
    parser.add_argument("--latency-threads", type=int, default=2, help="threads of the one-clip latency case")
    parser.add_argument("--compile-models", default=None, help="EAT and/or AST (default: EAT on CPU, both on GPU)")
    parser.add_argument("--compile-ast", action="store_true", help="also compile AST (slow on CPU)")
    parser.add_argument("--compile-variants", default=None,
                        help=f"precision:mode[{NEW_BATCH_SUFFIX}] entries, modes {', '.join(COMPILE_MODES)} "
                             f"(default: {CPU_DEFAULTS['compile_variants']} on CPU, "
                             f"{GPU_DEFAULTS['compile_variants']} on GPU)")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend (default: inductor; aot_eager in --smoke, which skips "
                             "inductor's code generation)")
    parser.add_argument("--explain-hidden-states", action=argparse.BooleanOptionalAction, default=None,
                        help="also explain the graph breaks of output_hidden_states=True (default: not on GPU, where "
                             "it adds ~20 s and finds what it finds on CPU)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop starting rows after this many seconds (default: 330 on GPU, none on CPU)")
    parser.add_argument("--compile-timeout-s", type=float, default=240.0,
                        help="longest one compile row may take, compilation included")
    args = parser.parse_args()
    args.start_time = time.perf_counter()
    device = resolve_defaults(args)
    apply_threads(args.threads)
    sys.stdout.reconfigure(line_buffering=True)
    frames = SMOKE_FRAMES if args.smoke else CLIP_FRAMES
    machine = machine_info()
    print(f"{machine['cpu']}, GPU {machine.get('gpu')}, {machine['torch_threads']} threads, torch {machine['torch']}, "
          f"transformers {machine['transformers']}, load {machine.get('load_average_1min')}; device {device}, "
          f"{frames} frames per clip, median of {args.repeats} timed calls after {args.warmup} warm-up")

    settings = {key: value for key, value in vars(args).items() if key != "start_time"}
    settings.update(json=str(args.json), frames=frames)
    probe = matmul_probe(device, 256 if args.smoke else (4096 if device.type == "cuda" else 1024))
    print_table(probe, ["dtype", "size", "gflop_per_s"], "matmul probe")
    results = []

    def save(section_rows=()):
        write_json(args.json, machine, settings, results + list(section_rows), matmul_probe=probe,
                   wall_s=elapsed(args))

    tables = {
        "flops": (["model", "gflop_per_clip", "EAT/AST flops"], "FLOPs per clip (forward)"),
        "throughput": (["model", "attention", "dtype", "batch", "clips_per_s", "best_clips_per_s", "ms_per_clip",
                        "EAT/AST clips/s", "peak_gpu_mib", "status"], f"throughput, batch {args.batch}"),
        "latency": (["model", "threads", "latency_ms", "best_latency_ms", "EAT/AST latency"],
                    "one-clip latency (fp32, sdpa)"),
        "compile": (["model", "dtype", "mode", "backend", "batch", "first_call_s", "eager_clips_per_s",
                     "compiled_clips_per_s", "compiled/eager", "recompilations_in_steady_state",
                     "compiled_output_dtype", "new_batch_first_call_s", "recompilations_for_new_batch",
                     "compiled_after_new_batch_clips_per_s", "status"], "torch.compile"),
    }
    runners = {
        "flops": lambda: run_flops(args, frames),
        "throughput": lambda: run_throughput(args, device, frames),
        "latency": lambda: run_latency(args, device, frames),
        "compile": lambda: run_compile(args, device, frames, save),
    }
    for section in SECTIONS:
        if section not in args.sections:
            continue
        progress(args, f"section {section}")
        try:
            rows = runners[section]()
        except Exception as error:
            traceback.print_exc()
            rows = [{"section": section, "status": row_status(error)}]
        results += rows
        columns, title = tables[section]
        print_table([row for row in rows if row["section"] == section], columns, title)
        if section == "compile":
            for row in rows:
                for key in ("explain", "explain_output_hidden_states_first_call",
                            "explain_output_hidden_states_later_calls", "recompile_reasons"):
                    if key in row:
                        print(f"{row.get('model')} {row.get('dtype', '')} {row.get('mode', '')} {key}: {row[key]}")
        save()
    progress(args, "done")


if __name__ == "__main__":
    main()
