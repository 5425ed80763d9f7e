"""One EAT pre-training step (teacher forward, student forward + backward, decoder forward + backward, AdamW, EMA):
`EATForPreTraining` against a plain PyTorch step written here with the same arithmetic, in the same process.

The plain step has no transformers machinery (no attention-interface dispatch, no output-capturing hooks, no output
dataclasses): its blocks call `F.scaled_dot_product_attention` directly and return their feed-forward output for the
teacher's targets. Both take the same clips, the same masks (drawn once with `EATMaskGenerator`, as the pre-training
collator does) and AdamW with the same settings, so the ratio ours/plain is the cost of the integration.

Per case it reports clips/s (each clip is trained on `clone_batch` masked clones), matmul/conv FLOPs per clip counted
with `torch.utils.flop_counter.FlopCounterMode` (forward + backward; the optimizer is not counted; grouped convolution
gradients corrected, see `common.flops_of`), achieved TFLOP/s and, on a known GPU in bf16, MFU; the peak memory of a
step (CUDA's allocator on a GPU, the resident size on the CPU), and the time of each part of the step (CUDA events on
a GPU). The variants take turns, step by step, so load from other jobs hits all alike.

Variants (`--variants`): `ours` and `plain` are the comparison; the others are levers on our step, each measured
rather than assumed: `ours-fused-adamw`, `ours-cudnn-benchmark` (cuDNN autotuning, for the grouped convolutions),
`ours-unfold-decoder` (the decoder's grouped convolutions as unfold + batched matmul; `-recompute` unfolds again in
the backward instead of keeping the 9x larger columns), `ours-compiled` and
`plain-compiled` (`torch.compile`). Each eager variant's loss after one update is compared with ours (same weights,
same noise): a lever must not change it beyond rounding.

A second table compares formulations of the CNN decoder's 16-group 3x3 convolution (forward + backward of one layer at
the case's width): `nn.Conv2d` (NCHW), the same in channels-last memory format, unfold (im2col) + a batched matmul per
group (columns kept, or recomputed in the backward), and on a GPU `nn.Conv2d` with cuDNN autotuning, with the largest
difference of their outputs.

Sizes: on the CPU the default cases are the `tiny` preset (2 clips) and `base-2l`, EAT-Base's width and full decoder
with 2 encoder blocks instead of 12 (1 clip), in fp32, `ours` and `plain`. On a GPU the default is the issue's setting:
full EAT-Base, 10 s clips, 12 and 32 clips x 16 clones, bf16 autocast, every variant.

Usage:
    python benchmarks/bench_pretraining_step.py [--smoke] [--json results.json] [--cases tiny,base-2l]
    python benchmarks/bench_pretraining_step.py --device cuda --batch 12,32 --variants ours,plain,ours-fused-adamw
"""

import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from modeling_eat import EATConfig, EATForPreTraining
from modeling_eat.masking_eat import EATMaskGenerator
from modeling_eat.modeling_eat import sincos_position_table
from modeling_eat.optimization import optimizer_param_groups

import common


CASES = {
    "tiny": ("tiny", {}, 2),
    "base-2l": ("base", {"num_hidden_layers": 2}, 1),
    "base": ("base", {}, 1),
}
LEARNING_RATE = 5e-4
WEIGHT_DECAY = 0.05
PARTS = ("teacher_forward", "student_forward_backward", "decoder_forward_backward", "optimizer_and_ema", "other")


class PlainBlock(nn.Module):
    """Post-LN Transformer block returning `(output, feed-forward output)`."""

    def __init__(self, config: EATConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attention = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, width)
        x = self.norm1(x + self.proj(attention))
        ffn = self.fc2(F.gelu(self.fc1(x)))
        return self.norm2(x + ffn), ffn


class PlainEncoder(nn.Module):
    def __init__(self, config: EATConfig):
        super().__init__()
        self.patch = nn.Conv2d(1, config.hidden_size, config.patch_size, stride=config.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.register_buffer(
            "positions", sincos_position_table(config.max_time_patches, config.num_freq_patches, config.hidden_size)
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.blocks = nn.ModuleList([PlainBlock(config) for _ in range(config.num_hidden_layers)])

    def forward(self, spectrogram, visible_index=None, clones=1):
        x = self.patch(spectrogram.unsqueeze(1)).flatten(2).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        if visible_index is not None:
            x = x.repeat_interleave(clones, dim=0)
            x = torch.gather(x, 1, visible_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = self.norm(torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1))
        ffn_outputs = []
        for block in self.blocks:
            x, ffn = block(x)
            ffn_outputs.append(ffn)
        return x, ffn_outputs


def plain_decoder_width(config: EATConfig) -> int:
    """The CNN decoder's width: the config's, else EAT's (the encoder's)."""
    return config.decoder_hidden_size or config.hidden_size


class PlainDecoder(nn.Module):
    def __init__(self, config: EATConfig):
        super().__init__()
        channels = [config.hidden_size] + [plain_decoder_width(config)] * config.decoder_num_layers
        kernel = config.decoder_kernel_size
        self.convs = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], kernel, padding=kernel // 2, groups=config.decoder_groups)
            for i in range(config.decoder_num_layers)
        )
        self.projection = nn.Linear(plain_decoder_width(config), config.hidden_size)

    def forward(self, tokens, num_time_patches):
        batch, patches, width = tokens.shape
        x = tokens.transpose(1, 2).reshape(batch, width, num_time_patches, -1)
        for conv in self.convs:
            y = conv(x)
            y = F.gelu(F.layer_norm(y.movedim(1, -1), y.shape[1:2]).movedim(-1, 1))
            x = y + x if y.shape == x.shape else y
        return self.projection(x.flatten(2).transpose(1, 2))


class StepClock:
    """Marks inside a step. On the CPU a mark is the host time; on a GPU it is a CUDA event, because the host only
    queues kernels there and its clock says nothing about when they ran. Read intervals after synchronising."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start, end) -> float:
        return start.elapsed_time(end) / 1000 if self.cuda else end - start


def step_parts(marks: dict, seconds) -> dict[str, float]:
    """The parts of a step from its marks: the backward is split where the gradient reaches the decoder's input."""
    return {
        "teacher_forward": seconds(marks["teacher_start"], marks["teacher_end"]),
        "student_forward_backward": seconds(marks["student_start"], marks["student_end"])
        + seconds(marks["decoder_backward"], marks["backward_end"]),
        "decoder_forward_backward": seconds(marks["decoder_start"], marks["decoder_end"])
        + seconds(marks["backward_start"], marks["decoder_backward"]),
        "optimizer_and_ema": seconds(marks["backward_end"], marks["end"]),
    }


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast as Accelerate's mixed precision applies it; a no-op context for fp32 (`dtype` None)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


class TimedStep:
    """What both steps share for timing their parts: named marks, taken only while a step is being recorded."""

    def __init__(self, device: torch.device, measures_parts: bool):
        self.clock = StepClock(device)
        self.measures_parts = measures_parts
        self.marks = {}
        self.recording = False

    def mark(self, name: str) -> None:
        if self.recording:
            self.marks[name] = self.clock.mark()

    def parts(self) -> dict[str, float]:
        return step_parts(self.marks, self.clock.seconds)


class PlainStep(TimedStep):
    """The reference step: student on the visible patches, teacher on all, CNN decoder, AdamW, EMA."""

    def __init__(self, config: EATConfig, device: torch.device, dtype: torch.dtype | None, compiled: bool = False):
        super().__init__(device, measures_parts=not compiled)
        self.config, self.device, self.dtype = config, device, dtype
        self.mask_generator = EATMaskGenerator(config)
        self.student = PlainEncoder(config).to(device)
        self.decoder = PlainDecoder(config).to(device)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False).eval()
        parameters = [*self.student.parameters(), *self.decoder.parameters()]
        self.optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        self.loss_fn = torch.compile(self.forward_loss) if compiled else self.forward_loss

    def forward_loss(self, spectrogram, visible_index, masked_index, clones):
        config = self.config
        self.mark("teacher_start")
        with torch.no_grad():
            _, ffn_outputs = self.teacher(spectrogram)
            # EAT's targets: the config's top layers, else all of them.
            top = ffn_outputs[-(config.average_top_k_layers or config.num_hidden_layers) :]
            targets = sum(F.instance_norm(f[:, 1:].float().transpose(1, 2)).transpose(1, 2) for f in top) / len(top)
            targets = F.layer_norm(targets, targets.shape[-1:]).repeat_interleave(clones, dim=0)
        self.mark("teacher_end")
        self.mark("student_start")
        student, _ = self.student(spectrogram, visible_index, clones)
        visible = student[:, 1:]
        if self.recording:
            visible.register_hook(lambda grad: self.mark("decoder_backward"))
        self.mark("student_end")
        self.mark("decoder_start")
        num_patches = visible_index.shape[1] + masked_index.shape[1]
        noise = torch.randn(visible.shape[0], num_patches, visible.shape[-1], device=visible.device,
                            dtype=visible.dtype) * config.mask_noise_std
        index = visible_index.unsqueeze(-1).expand(-1, -1, visible.shape[-1])
        predictions = self.decoder(noise.scatter(1, index, visible), spectrogram.shape[1] // config.patch_size)
        self.mark("decoder_end")

        masked = masked_index.unsqueeze(-1).expand(-1, -1, visible.shape[-1])
        scale = visible.shape[-1] ** -0.5
        difference = predictions.gather(1, masked).float() - targets.gather(1, masked)
        frame_loss = difference.pow(2).sum(-1).mean() * scale
        utterance_errors = (student[:, 0].float() - targets.mean(dim=1)).pow(2).sum(-1) * scale
        summed = config.utterance_loss_reduction == "sum"
        utterance_loss = utterance_errors.sum() if summed else utterance_errors.mean()
        loss = frame_loss + config.utterance_loss_weight * utterance_loss
        return loss

    def __call__(self, spectrogram, bool_masked_pos, record_parts=False):
        self.recording = record_parts and self.measures_parts
        clones = bool_masked_pos.shape[0] // spectrogram.shape[0]
        # The collator knows the visible count on the host; reading it here would stall a GPU.
        num_visible = self.mask_generator.num_visible(
            spectrogram.shape[1] // self.config.patch_size, self.config.num_freq_patches)
        order = torch.argsort(bool_masked_pos.to(torch.int8), dim=1, stable=True)
        with autocast(self.device, self.dtype):
            loss = self.loss_fn(spectrogram, order[:, :num_visible], order[:, num_visible:], clones)
        self.mark("backward_start")
        loss.backward()
        self.mark("backward_end")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_lerp_(
                list(self.teacher.parameters()), list(self.student.parameters()), 1 - self.config.ema_decay
            )
        self.mark("end")
        self.recording = False
        return loss


class UnfoldConv2d(nn.Module):
    """Stands in for a decoder `nn.Conv2d` with the same parameters, computed as `grouped_conv_unfold`.

    The unfolded columns are 9x the input (3x3 kernel); autograd keeps them for the backward unless `recompute`, which
    keeps only the input and unfolds it again in the backward (`torch.utils.checkpoint`): memory against time."""

    def __init__(self, conv: nn.Conv2d, recompute: bool = False):
        super().__init__()
        self.conv = conv
        self.recompute = recompute

    def forward(self, x):
        arguments = (x, self.conv.weight, self.conv.bias, self.conv.groups)
        if self.recompute:
            return torch.utils.checkpoint.checkpoint(grouped_conv_unfold, *arguments, use_reentrant=False)
        return grouped_conv_unfold(*arguments)


class OursStep(TimedStep):
    """`EATForPreTraining` as `python -m modeling_eat.pretrain` drives it (forward under autocast when bf16, as
    Accelerate's mixed precision does); module hooks time its parts without changing it. The options are the levers the
    variants measure: a fused AdamW, `torch.compile` of the model, cuDNN autotuning, and the decoder's grouped
    convolutions as unfold + matmul (`unfold_decoder`: "kept" or "recomputed" columns, see `UnfoldConv2d`)."""

    def __init__(self, config: EATConfig, device: torch.device, dtype: torch.dtype | None, fused_adamw=False,
                 compiled=False, cudnn_benchmark=False, unfold_decoder: str | None = None):
        # Hooks would be traced into a compiled graph: compiled variants are timed whole.
        super().__init__(device, measures_parts=not compiled)
        self.model = EATForPreTraining(config).to(device).train()
        if unfold_decoder:
            for layer in self.model.decoder.layers:
                layer.conv = UnfoldConv2d(layer.conv, recompute=unfold_decoder == "recomputed")
        self.optimizer = torch.optim.AdamW(
            optimizer_param_groups(self.model, WEIGHT_DECAY), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY,
            fused=fused_adamw or None,
        )
        self.device, self.dtype, self.cudnn_benchmark = device, dtype, cudnn_benchmark
        self.forward = torch.compile(self.model) if compiled else self.model
        if self.measures_parts:
            self.install_hooks()

    def install_hooks(self):
        def mark(name):
            def hook(*_):
                self.mark(name)

            return hook

        for name, module in (("teacher", self.model.teacher), ("student", self.model.eat),
                             ("decoder", self.model.decoder)):
            module.register_forward_pre_hook(mark(f"{name}_start"))
            module.register_forward_hook(mark(f"{name}_end"))
        # Fires once the gradient reaches the decoder's input: the decoder's backward is done, the student's begins.
        self.model.decoder.register_full_backward_hook(mark("decoder_backward"))

    def __call__(self, spectrogram, bool_masked_pos, record_parts=False):
        self.recording = record_parts and self.measures_parts
        cudnn_benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        try:
            with autocast(self.device, self.dtype):
                loss = self.forward(spectrogram, bool_masked_pos=bool_masked_pos).loss
            self.mark("backward_start")
            loss.backward()
            self.mark("backward_end")
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.model.update_teacher()
            self.mark("end")
        finally:
            torch.backends.cudnn.benchmark = cudnn_benchmark
            self.recording = False
        return loss


# name → (step class, options). "ours" and "plain" are the comparison the issue asks for; the others are levers.
VARIANTS = {
    "ours": (OursStep, {}),
    "plain": (PlainStep, {}),
    "ours-fused-adamw": (OursStep, {"fused_adamw": True}),
    "ours-cudnn-benchmark": (OursStep, {"cudnn_benchmark": True}),
    "ours-unfold-decoder": (OursStep, {"unfold_decoder": "kept"}),
    "ours-unfold-decoder-recompute": (OursStep, {"unfold_decoder": "recomputed"}),
    "ours-compiled": (OursStep, {"compiled": True}),
    "plain-compiled": (PlainStep, {"compiled": True}),
}
VARIANT_LABELS = {"ours": "EAT (ours)", "plain": "plain PyTorch"}
DEFAULT_VARIANTS = {"cpu": "ours,plain", "cuda": ",".join(VARIANTS)}


class PeakDeviceMemory:
    """Peak memory of one step: CUDA's allocator high-water mark on a GPU, the resident size on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.host = common.PeakMemory().__enter__()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.host.__exit__(*exc)
            self.peak_mib = self.host.peak_mib
        return False


def measure_steps(steps: dict, spectrogram, bool_masked_pos, repeats: int, device: torch.device,
                  flops: dict[str, int]) -> dict[str, dict]:
    """Per implementation: clips/s (median and best of `repeats`), the parts of its median step, FLOPs per clip and
    peak memory. The implementations take turns step by step, so a burst of load from other jobs on the machine
    hits all alike instead of one of them. One that fails (out of memory, a compile error) is reported as such and
    the others go on."""
    clips = spectrogram.shape[0]
    calls, failures, first_call = {name: [] for name in steps}, {}, {}
    # The first call of each is its warm-up (and its compilation, for the compiled ones).
    for name, step in steps.items():
        try:
            start = time.perf_counter()
            step(spectrogram, bool_masked_pos)
            common.synchronize(device)
            first_call[name] = time.perf_counter() - start
        except Exception as error:  # noqa: BLE001 - one variant failing must not lose the others' figures
            failures[name] = common.failure_status(error)
            print(f"  {name}: {failures[name]}", flush=True)
    for _ in range(max(1, repeats)):
        for name, step in steps.items():
            if name in failures:
                continue
            try:
                with PeakDeviceMemory(device) as memory:
                    common.synchronize(device)
                    start = time.perf_counter()
                    step(spectrogram, bool_masked_pos, record_parts=True)
                    common.synchronize(device)
                    seconds = time.perf_counter() - start
            except Exception as error:  # noqa: BLE001
                failures[name] = common.failure_status(error)
                continue
            parts = step.parts() if step.measures_parts else {}
            if parts:
                parts["other"] = seconds - sum(parts.values())
            calls[name].append({"seconds": seconds, "parts": parts, "peak_mib": memory.peak_mib})
    results = {}
    for name in steps:
        if name in failures:
            results[name] = {"status": failures[name]}
            continue
        timed = calls[name]
        seconds = [call["seconds"] for call in timed]
        median_call = sorted(timed, key=lambda call: call["seconds"])[len(timed) // 2]
        results[name] = {
            "status": "ok",
            "clips_per_s": clips / statistics.median(seconds),
            "best_clips_per_s": clips / min(seconds),
            "step_s": statistics.median(seconds),
            "first_call_s": first_call[name],
            "timings_s": seconds,
            "gflop_per_clip": flops[name] / clips / 1e9,
            "achieved_tflop_per_s": flops[name] / statistics.median(seconds) / 1e12,
            "peak_mib": max(call["peak_mib"] for call in timed),
            **{f"{part}_s": median_call["parts"].get(part) for part in PARTS},
        }
    return results


def grouped_conv_unfold(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    """The decoder's grouped convolution as im2col (`F.unfold`) and one batched matmul over the groups."""
    batch, _, height, width = x.shape
    out_channels, in_per_group, kernel, _ = weight.shape
    if torch.is_autocast_enabled(x.device.type):
        # The decoder's input comes out of a LayerNorm in fp32: unfolding it first would make fp32 columns (and a
        # second, cast copy for the matmul), twice the memory of unfolding the cast input.
        x = x.to(torch.get_autocast_dtype(x.device.type))
    columns = F.unfold(x, kernel, padding=kernel // 2).view(batch, groups, in_per_group * kernel * kernel, -1)
    weight = weight.view(groups, out_channels // groups, in_per_group * kernel * kernel)
    output = torch.matmul(weight.unsqueeze(0), columns)
    return output.reshape(batch, out_channels, height, width) + bias.view(1, -1, 1, 1)


def decoder_conv_variants(config: EATConfig, rows: int, num_time_patches: int, repeats: int, device: torch.device,
                          dtype: torch.dtype | None) -> list[dict]:
    """Forward + backward of one decoder convolution at this width and grid, in each formulation (under autocast
    when `dtype` is given, as in the step), with the largest difference from `nn.Conv2d`'s output."""
    width = plain_decoder_width(config)
    conv = nn.Conv2d(width, width, config.decoder_kernel_size, padding=config.decoder_kernel_size // 2,
                     groups=config.decoder_groups).to(device)
    grid = torch.randn(rows, width, num_time_patches, config.num_freq_patches, device=device)
    variants = {
        "conv2d (NCHW)": (conv, grid, False),
        "conv2d (channels_last)": (
            copy.deepcopy(conv).to(memory_format=torch.channels_last),
            grid.contiguous(memory_format=torch.channels_last),
            False,
        ),
        "unfold + matmul": (UnfoldConv2d(conv), grid, False),
        "unfold + matmul, recomputed in backward": (UnfoldConv2d(conv, recompute=True), grid, False),
    }
    if device.type == "cuda":
        variants["conv2d (NCHW, cudnn.benchmark)"] = (conv, grid, True)

    with torch.no_grad(), autocast(device, dtype):
        reference = conv(grid).float()
    # The convolution's own count, for every formulation: the counter does not see through unfold's broadcast matmul.
    reference_input = grid.detach().requires_grad_(True)
    flops = common.flops_of(lambda: conv(reference_input).sum().backward())
    results = []
    cudnn_benchmark = torch.backends.cudnn.benchmark
    for name, (module, x, benchmark_cudnn) in variants.items():
        x = x.detach().requires_grad_(True)

        def forward_backward():
            with autocast(device, dtype):
                output = module(x)
            output.float().sum().backward()

        torch.backends.cudnn.benchmark = benchmark_cudnn
        try:
            with PeakDeviceMemory(device) as memory:
                timing = common.time_calls(forward_backward, repeats=repeats, device=device)
            with torch.no_grad(), autocast(device, dtype):
                difference = (module(x).float() - reference).abs().max().item()
        except Exception as error:  # noqa: BLE001 - an out-of-memory formulation must not lose the others
            results.append({"formulation": name, "rows": rows, "status": common.failure_status(error)})
            continue
        finally:
            torch.backends.cudnn.benchmark = cudnn_benchmark
        results.append({"formulation": name, "status": "ok", "rows": rows, "channels": width,
                        "groups": config.decoder_groups, "ms": 1000 * timing["median_s"],
                        "best_ms": 1000 * timing["best_s"], "gflop_per_s": flops / timing["best_s"] / 1e9,
                        "max_abs_diff": difference, "peak_mib": memory.peak_mib})
    for row in results:
        if row["status"] == "ok" and results[0]["status"] == "ok":
            row["speedup_vs_conv2d"] = results[0]["ms"] / row["ms"]
    return results


# Dense bf16 tensor-core peak of the GPUs this is meant for (NVIDIA's data sheets, SXM parts, no sparsity); the MFU
# column divides by it. Another GPU or dtype: pass --peak-tflops.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def peak_tflops(device: torch.device, dtype: torch.dtype | None, override: float | None) -> float | None:
    if override is not None:
        return override
    if device.type != "cuda" or dtype != torch.bfloat16:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for gpu, peak in PEAK_BF16_TFLOPS.items() if gpu in name), None)


def main():
    parser = common.benchmark_parser(__doc__)
    parser.add_argument("--cases", default=None,
                        help=f"comma-separated, from {sorted(CASES)} (default: tiny,base-2l on the CPU, base on a "
                             "GPU)")
    parser.add_argument("--batch", default=None,
                        help="clips per step, or several comma-separated "
                             "(default: the case's; 12,32 for base on a GPU)")
    parser.add_argument("--frames", type=int, default=common.CLIP_FRAMES, help="fbank frames per clip (1024 = 10 s)")
    parser.add_argument("--clones", type=int, default=None, help="masked clones per clip (default: the config's, 16)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default=None,
                        help="bf16 runs the forward under autocast, as Accelerate's mixed precision does "
                             "(default: bf16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated, from {list(VARIANTS)} (default: ours,plain on the CPU, all on a GPU)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak for the MFU column (default: known bf16 peaks of H100/H200/A100)")
    parser.add_argument("--skip-decoder-variants", action="store_true", help="leave out the decoder conv table")
    args = parser.parse_args()
    common.apply_threads(args.threads)
    device = torch.device(args.device)
    dtype_name = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    dtype = torch.bfloat16 if dtype_name == "bf16" else None
    cases = (args.cases or ("base" if device.type == "cuda" else "tiny,base-2l")).split(",")
    variants = (args.variants or DEFAULT_VARIANTS.get(device.type, DEFAULT_VARIANTS["cpu"])).split(",")
    for option, chosen, known in (("--cases", cases, CASES), ("--variants", variants, VARIANTS)):
        unknown = set(chosen) - set(known)
        if unknown:
            raise ValueError(f"unknown {option} {sorted(unknown)}: choose from {sorted(known)}")
    batches = [int(batch) for batch in args.batch.split(",")] if args.batch else None
    if batches is None and device.type == "cuda" and cases == ["base"]:
        batches = [12, 32]
    if args.smoke:
        cases, args.frames, args.repeats, batches, args.clones = ["tiny"], 64, 1, [1], 4
    peak = peak_tflops(device, dtype, args.peak_tflops)
    machine = common.machine_info()
    print(f"{machine['gpu'] or machine['cpu']}, {machine['torch_threads']} threads, torch {machine['torch']}, "
          f"transformers {machine['transformers']}, load {machine.get('load_average_1min')}; {args.frames} frames per "
          f"clip, {dtype_name}, variants {variants}, median of {args.repeats} timed steps each, after one warm-up, "
          f"taking turns", flush=True)

    results, decoder_rows = [], []
    for case in cases:
        preset, overrides, default_batch = CASES[case]
        if args.clones:
            overrides = {**overrides, "clone_batch": args.clones}
        config = EATConfig.from_preset(preset, **overrides)
        for batch in batches or [default_batch]:
            results += measure_case(case, config, batch, args, variants, device, dtype, peak)
            if not args.skip_decoder_variants:
                decoder_rows += [{"case": case, **row} for row in decoder_conv_variants(
                    config, batch * config.clone_batch, args.frames // config.patch_size, args.repeats, device, dtype)]
            if args.json:
                # A long GPU run may be stopped at its time limit: what finished is kept.
                common.write_json(args.json, machine, {**vars(args), "json": str(args.json)}, results,
                                  decoder_convolution=decoder_rows, dtype=dtype_name, device=str(device))

    step_columns = ["case", "implementation", "batch", "clones", "clips_per_s", "best_clips_per_s",
                    "ours/plain clips/s", "vs ours", "gflop_per_clip", "achieved_tflop_per_s", "mfu", "peak_mib",
                    "first_call_s", "status"]
    common.print_table(results, step_columns, f"pre-training step ({dtype_name}, {device.type})")
    common.print_table(results, ["case", "implementation", "batch", "step_s", *[f"{part}_s" for part in PARTS]],
                       "parts of the median step, seconds")
    common.print_table(results, ["case", "implementation", "batch", "second_loss", "second_loss_diff_vs_ours"],
                       "loss of the second step, same weights and noise (a lever must not change it beyond rounding)")
    if decoder_rows:
        columns = ["case", "formulation", "rows", "channels", "groups", "ms", "best_ms", "gflop_per_s",
                   "speedup_vs_conv2d", "max_abs_diff", "peak_mib", "status"]
        common.print_table(decoder_rows, columns, "one decoder convolution, forward + backward")
    common.write_json(args.json, machine, {**vars(args), "json": str(args.json)}, results,
                      decoder_convolution=decoder_rows, dtype=dtype_name, device=str(device))


def counted_first_steps(step, spectrogram, bool_masked_pos) -> tuple[int, float]:
    """FLOPs of a step's first call, and the loss of its second: the first update (optimizer, EMA) shows in it. The
    global random state (the decoder's noise) is seeded alike before each."""
    torch.manual_seed(1)
    flops = common.flops_of(lambda: step(spectrogram, bool_masked_pos))
    torch.manual_seed(2)
    return flops, float(step(spectrogram, bool_masked_pos).detach())


def measure_case(case, config, batch, args, variants, device, dtype, peak) -> list[dict]:
    num_time_patches = args.frames // config.patch_size
    generator = torch.Generator().manual_seed(0)
    spectrogram = torch.randn(batch, args.frames, common.NUM_MEL_BINS, generator=generator).to(device)
    bool_masked_pos = EATMaskGenerator(config)(batch, num_time_patches, config.num_freq_patches, generator)
    bool_masked_pos = bool_masked_pos.to(device)
    steps, flops = {}, {}
    for name in variants:
        step_class, options = VARIANTS[name]
        torch.manual_seed(0)
        steps[name] = step_class(config, device, dtype, **options)
    # The arithmetic does not change with compilation: a compiled variant is credited its eager twin's count (an
    # eager twin is built just for counting when it is not measured).
    # These first steps are also the proof that a lever leaves the arithmetic alone: every eager variant starts from
    # the same weights and draws the same decoder noise, so its loss after one update must equal ours to rounding.
    # (Inductor draws its random numbers differently, so compiled variants are not compared.)
    second_losses = {}
    for name, step in steps.items():
        if step.measures_parts:
            flops[name], second_losses[name] = counted_first_steps(step, spectrogram, bool_masked_pos)
    for name in steps:
        twin = name.replace("-compiled", "")
        if name not in flops and twin not in flops:
            step_class, options = VARIANTS[twin]
            torch.manual_seed(0)
            flops[twin], _ = counted_first_steps(step_class(config, device, dtype, **options), spectrogram,
                                                bool_masked_pos)
        flops.setdefault(name, flops[twin])
    measured = measure_steps(steps, spectrogram, bool_masked_pos, args.repeats, device, flops)
    del steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rows = []
    for name, measurement in measured.items():
        row = {"case": case, "implementation": VARIANT_LABELS.get(name, name), "batch": batch,
               "clones": config.clone_batch, "frames": args.frames, "hidden_size": config.hidden_size,
               "layers": config.num_hidden_layers, "decoder_layers": config.decoder_num_layers, **measurement}
        if peak and row["status"] == "ok":
            row["mfu"] = row["achieved_tflop_per_s"] / peak
        if name in second_losses:
            row["second_loss"] = second_losses[name]
            if name.startswith("ours") and "ours" in second_losses:
                row["second_loss_diff_vs_ours"] = abs(second_losses[name] - second_losses["ours"])
        rows.append(row)
        print(f"  {case} batch {batch} {name}: {row.get('clips_per_s', row['status'])} clips/s", flush=True)
    ours = rows[0] if variants[0] == "ours" and rows[0]["status"] == "ok" else None
    for row in rows:
        if ours and row["status"] == "ok":
            row["vs ours"] = row["clips_per_s"] / ours["clips_per_s"]
    plain = next((row for row in rows if row["implementation"] == VARIANT_LABELS["plain"]), None)
    if ours and plain and plain["status"] == "ok":
        ours["ours/plain clips/s"] = ours["clips_per_s"] / plain["clips_per_s"]
    return rows


if __name__ == "__main__":
    main()
