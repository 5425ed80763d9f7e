"""One EAT pre-training step (teacher forward, student forward + backward, decoder forward + backward, AdamW, EMA):
`EATForPreTraining` against a plain PyTorch step written here with the same arithmetic, in the same process.

The plain step has no transformers machinery (no attention-interface dispatch, no output-capturing hooks, no output
dataclasses): its blocks call `F.scaled_dot_product_attention` directly and return their feed-forward output for the
teacher's targets. Both take the same clips, the same masks (drawn once with `EATMaskGenerator`, as the pre-training
collator does) and AdamW with the same settings, so the ratio ours/plain is the cost of the integration.

Per case it reports clips/s (each clip is trained on `clone_batch` masked clones), matmul/conv FLOPs per clip counted
with `torch.utils.flop_counter.FlopCounterMode` (forward + backward; the optimizer is not counted; grouped convolution
gradients corrected, see `common.flops_of`), the process's peak resident memory during a step, and the time of each
part of the step. Ours and the plain step take turns, step by step, so load from other jobs hits both alike.

A second table compares formulations of the CNN decoder's 16-group 3x3 convolution (forward + backward of one layer at
the case's width): `nn.Conv2d` (NCHW), the same in channels-last memory format, and unfold (im2col) + a batched
matmul per group, with the largest difference of their outputs.

Sizes: EAT-Base at 10 s is too slow to train on a small CPU, so the default cases are the `tiny` preset (2 clips) and
`base-2l`, EAT-Base's width and full decoder with 2 encoder blocks instead of 12 (1 clip); `--cases base` runs the
full model (and `--batch`, `--frames` change the input).

Usage:
    python benchmarks/bench_pretraining_step.py [--smoke] [--json results.json] [--cases tiny,base-2l]
"""

import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from common import (
    CLIP_FRAMES,
    NUM_MEL_BINS,
    PeakMemory,
    apply_threads,
    benchmark_parser,
    flops_of,
    machine_info,
    print_table,
    time_calls,
    write_json,
)
from modeling_eat import EATConfig, EATForPreTraining
from modeling_eat.masking_eat import EATMaskGenerator
from modeling_eat.modeling_eat import sincos_position_table
from modeling_eat.pretraining_loop import optimizer_param_groups


CASES = {
    "tiny": ("tiny", {}, 2),
    "base-2l": ("base", {"num_hidden_layers": 2, "average_top_k_layers": 2}, 1),
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


class PlainDecoder(nn.Module):
    def __init__(self, config: EATConfig):
        super().__init__()
        channels = [config.hidden_size] + [config.decoder_hidden_size] * config.decoder_num_layers
        kernel = config.decoder_kernel_size
        self.convs = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], kernel, padding=kernel // 2, groups=config.decoder_groups)
            for i in range(config.decoder_num_layers)
        )
        self.projection = nn.Linear(config.decoder_hidden_size, config.hidden_size)

    def forward(self, tokens, num_time_patches):
        batch, patches, width = tokens.shape
        x = tokens.transpose(1, 2).reshape(batch, width, num_time_patches, -1)
        for conv in self.convs:
            y = conv(x)
            y = F.gelu(F.layer_norm(y.movedim(1, -1), y.shape[1:2]).movedim(-1, 1))
            x = y + x if y.shape == x.shape else y
        return self.projection(x.flatten(2).transpose(1, 2))


class PlainStep:
    """The reference step: student on the visible patches, teacher on all, CNN decoder, AdamW, EMA."""

    def __init__(self, config: EATConfig):
        self.config = config
        self.student = PlainEncoder(config)
        self.decoder = PlainDecoder(config)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False).eval()
        parameters = [*self.student.parameters(), *self.decoder.parameters()]
        self.optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        self.parts = {}

    def __call__(self, spectrogram, bool_masked_pos, record_parts=False):
        config, marks = self.config, {}
        clones = bool_masked_pos.shape[0] // spectrogram.shape[0]
        num_masked = int(bool_masked_pos[0].sum())
        order = torch.argsort(bool_masked_pos.to(torch.int8), dim=1, stable=True)
        visible_index, masked_index = order[:, : order.shape[1] - num_masked], order[:, order.shape[1] - num_masked :]

        marks["start"] = time.perf_counter()
        with torch.no_grad():
            _, ffn_outputs = self.teacher(spectrogram)
            top = ffn_outputs[-config.average_top_k_layers :]
            targets = sum(F.instance_norm(f[:, 1:].transpose(1, 2)).transpose(1, 2) for f in top) / len(top)
            targets = F.layer_norm(targets, targets.shape[-1:]).repeat_interleave(clones, dim=0)
        marks["teacher"] = time.perf_counter()

        student, _ = self.student(spectrogram, visible_index, clones)
        visible = student[:, 1:]
        if record_parts:
            visible.register_hook(lambda grad: marks.__setitem__("decoder_backward", time.perf_counter()))
        marks["student_forward"] = time.perf_counter()
        noise = torch.randn(visible.shape[0], order.shape[1], visible.shape[-1]) * config.mask_noise_std
        index = visible_index.unsqueeze(-1).expand(-1, -1, visible.shape[-1])
        predictions = self.decoder(noise.scatter(1, index, visible), spectrogram.shape[1] // config.patch_size)
        marks["decoder_forward"] = time.perf_counter()

        masked = masked_index.unsqueeze(-1).expand(-1, -1, visible.shape[-1])
        scale = visible.shape[-1] ** -0.5
        frame_loss = (predictions.gather(1, masked) - targets.gather(1, masked)).pow(2).sum(-1).mean() * scale
        utterance_loss = (student[:, 0] - targets.mean(dim=1)).pow(2).sum(-1).mean() * scale
        loss = frame_loss + config.utterance_loss_weight * utterance_loss
        marks["loss"] = time.perf_counter()
        loss.backward()
        marks["backward"] = time.perf_counter()

        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_lerp_(list(self.teacher.parameters()), list(self.student.parameters()), 1 - config.ema_decay)
        marks["end"] = time.perf_counter()
        if record_parts:
            self.parts = {
                "teacher_forward": marks["teacher"] - marks["start"],
                "student_forward_backward": (marks["student_forward"] - marks["teacher"])
                + (marks["backward"] - marks["decoder_backward"]),
                "decoder_forward_backward": (marks["decoder_forward"] - marks["student_forward"])
                + (marks["decoder_backward"] - marks["loss"]),
                "optimizer_and_ema": marks["end"] - marks["backward"],
            }
        return loss


class OursStep:
    """`EATForPreTraining` as `training/pretrain.py` drives it; module hooks time its parts without changing it."""

    def __init__(self, config: EATConfig):
        self.model = EATForPreTraining(config).train()
        self.optimizer = torch.optim.AdamW(
            optimizer_param_groups(self.model, WEIGHT_DECAY), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY
        )
        self.marks = {}
        self.recording = False

        def mark(name):
            def hook(*_):
                if self.recording:
                    self.marks[name] = time.perf_counter()

            return hook

        for name, module in (("teacher", self.model.teacher), ("student", self.model.eat),
                             ("decoder", self.model.decoder)):
            module.register_forward_pre_hook(mark(f"{name}_start"))
            module.register_forward_hook(mark(f"{name}_end"))
        # Fires once the gradient reaches the decoder's input: the decoder's backward is done, the student's begins.
        self.model.decoder.register_full_backward_hook(mark("decoder_backward"))
        self.parts = {}

    def __call__(self, spectrogram, bool_masked_pos, record_parts=False):
        self.recording, marks = record_parts, self.marks
        start = time.perf_counter()
        loss = self.model(spectrogram, bool_masked_pos=bool_masked_pos).loss
        backward_start = time.perf_counter()
        loss.backward()
        backward_end = time.perf_counter()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.update_teacher()
        end = time.perf_counter()
        if record_parts:
            self.parts = {
                "teacher_forward": marks["teacher_end"] - marks["teacher_start"],
                "student_forward_backward": (marks["student_end"] - marks["student_start"])
                + (backward_end - marks["decoder_backward"]),
                "decoder_forward_backward": (marks["decoder_end"] - marks["decoder_start"])
                + (marks["decoder_backward"] - backward_start),
                "optimizer_and_ema": end - backward_end,
            }
        self.recording = False
        return loss


def measure_steps(steps: dict, spectrogram, bool_masked_pos, repeats: int) -> dict[str, dict]:
    """Per implementation: clips/s (median and best of `repeats`), the parts of its median step, FLOPs per clip and
    peak memory. The implementations take turns step by step, so a burst of load from other jobs on the machine
    hits both alike instead of one of them."""
    clips = spectrogram.shape[0]
    # Counting FLOPs runs one step of each: it is also their warm-up.
    flops = {name: flops_of(lambda: step(spectrogram, bool_masked_pos)) for name, step in steps.items()}
    calls = {name: [] for name in steps}
    for _ in range(max(1, repeats)):
        for name, step in steps.items():
            with PeakMemory() as memory:
                start = time.perf_counter()
                step(spectrogram, bool_masked_pos, record_parts=True)
                seconds = time.perf_counter() - start
            parts = dict(step.parts)
            parts["other"] = seconds - sum(parts.values())
            calls[name].append({"seconds": seconds, "parts": parts, "peak_mib": memory.peak_mib})
    results = {}
    for name, timed in calls.items():
        seconds = [call["seconds"] for call in timed]
        median_call = sorted(timed, key=lambda call: call["seconds"])[len(timed) // 2]
        results[name] = {
            "clips_per_s": clips / statistics.median(seconds),
            "best_clips_per_s": clips / min(seconds),
            "step_s": statistics.median(seconds),
            "timings_s": seconds,
            "gflop_per_clip": flops[name] / clips / 1e9,
            "achieved_gflop_per_s": flops[name] / min(seconds) / 1e9,
            "peak_rss_mib": max(call["peak_mib"] for call in timed),
            **{f"{part}_s": median_call["parts"][part] for part in PARTS},
        }
    return results


def grouped_conv_unfold(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    """The decoder's grouped convolution as im2col (`F.unfold`) and one batched matmul over the groups."""
    batch, _, height, width = x.shape
    out_channels, in_per_group, kernel, _ = weight.shape
    columns = F.unfold(x, kernel, padding=kernel // 2).view(batch, groups, in_per_group * kernel * kernel, -1)
    weight = weight.view(groups, out_channels // groups, in_per_group * kernel * kernel)
    output = torch.matmul(weight.unsqueeze(0), columns)
    return output.reshape(batch, out_channels, height, width) + bias.view(1, -1, 1, 1)


def decoder_conv_variants(config: EATConfig, rows: int, num_time_patches: int, repeats: int) -> list[dict]:
    """Forward + backward of one decoder convolution at this width and grid, in three formulations."""
    conv = nn.Conv2d(config.decoder_hidden_size, config.decoder_hidden_size, config.decoder_kernel_size,
                     padding=config.decoder_kernel_size // 2, groups=config.decoder_groups)
    grid = torch.randn(rows, config.decoder_hidden_size, num_time_patches, config.num_freq_patches)
    variants = {
        "conv2d (NCHW)": (conv, grid),
        "conv2d (channels_last)": (
            copy.deepcopy(conv).to(memory_format=torch.channels_last),
            grid.contiguous(memory_format=torch.channels_last),
        ),
        "unfold + matmul": (
            lambda x: grouped_conv_unfold(x, conv.weight, conv.bias, config.decoder_groups),
            grid,
        ),
    }
    with torch.no_grad():
        reference = conv(grid)
    # The convolution's own count, for every formulation: the counter does not see through unfold's broadcast matmul.
    reference_input = grid.detach().requires_grad_(True)
    flops = flops_of(lambda: conv(reference_input).sum().backward())
    results = []
    for name, (module, x) in variants.items():
        x = x.detach().requires_grad_(True)

        def forward_backward():
            module(x).sum().backward()

        timing = time_calls(forward_backward, repeats=repeats)
        with torch.no_grad():
            difference = (module(x) - reference).abs().max().item()
        results.append({"formulation": name, "rows": rows, "channels": config.decoder_hidden_size,
                        "groups": config.decoder_groups, "ms": 1000 * timing["median_s"],
                        "best_ms": 1000 * timing["best_s"], "gflop_per_s": flops / timing["best_s"] / 1e9,
                        "max_abs_diff": difference})
    for row in results:
        row["speedup_vs_conv2d"] = results[0]["ms"] / row["ms"]
    return results


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--cases", default="tiny,base-2l", help=f"comma-separated, from {sorted(CASES)}")
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default: the case's)")
    parser.add_argument("--frames", type=int, default=CLIP_FRAMES, help="fbank frames per clip (1024 = 10 s)")
    parser.add_argument("--clones", type=int, default=None, help="masked clones per clip (default: the config's, 16)")
    parser.add_argument("--skip-decoder-variants", action="store_true", help="leave out the decoder conv table")
    args = parser.parse_args()
    apply_threads(args.threads)
    cases = args.cases.split(",")
    unknown = set(cases) - set(CASES)
    if unknown:
        raise ValueError(f"unknown --cases {sorted(unknown)}: choose from {sorted(CASES)}")
    if args.smoke:
        cases, args.frames, args.repeats, args.batch, args.clones = ["tiny"], 64, 1, 1, 4
    machine = machine_info()
    print(f"{machine['cpu']}, {machine['torch_threads']} threads, torch {machine['torch']}, transformers "
          f"{machine['transformers']}, load {machine.get('load_average_1min')}; {args.frames} frames per clip, fp32, "
          f"median of {args.repeats} timed steps each, after one warm-up, taking turns")

    results, decoder_rows = [], []
    for case in cases:
        preset, overrides, default_batch = CASES[case]
        if args.clones:
            overrides = {**overrides, "clone_batch": args.clones}
        config = EATConfig.from_preset(preset, **overrides)
        batch = args.batch or default_batch
        num_time_patches = args.frames // config.patch_size
        generator = torch.Generator().manual_seed(0)
        spectrogram = torch.randn(batch, args.frames, NUM_MEL_BINS, generator=generator)
        bool_masked_pos = EATMaskGenerator(config)(batch, num_time_patches, config.num_freq_patches, generator)
        steps = {}
        for name, step_class in (("EAT (ours)", OursStep), ("plain PyTorch", PlainStep)):
            torch.manual_seed(0)
            steps[name] = step_class(config)
        measured = measure_steps(steps, spectrogram, bool_masked_pos, args.repeats)
        del steps
        case_rows = []
        for name, measurement in measured.items():
            case_rows.append({"case": case, "implementation": name, "batch": batch, "clones": config.clone_batch,
                              "frames": args.frames, "hidden_size": config.hidden_size,
                              "layers": config.num_hidden_layers, "decoder_layers": config.decoder_num_layers,
                              **measurement})
            print(f"  {case} {name}: {measurement['clips_per_s']:.3f} clips/s", flush=True)
        case_rows[0]["ours/plain clips/s"] = case_rows[0]["clips_per_s"] / case_rows[1]["clips_per_s"]
        results += case_rows
        if not args.skip_decoder_variants:
            decoder_rows += [{"case": case, **row} for row in decoder_conv_variants(
                config, batch * config.clone_batch, num_time_patches, args.repeats)]

    print_table(results, ["case", "implementation", "batch", "clones", "clips_per_s", "best_clips_per_s",
                          "ours/plain clips/s", "gflop_per_clip", "achieved_gflop_per_s", "peak_rss_mib"],
                "pre-training step (fp32)")
    print_table(results, ["case", "implementation", "step_s", *[f"{part}_s" for part in PARTS]],
                "parts of the median step, seconds")
    if decoder_rows:
        print_table(decoder_rows, ["case", "formulation", "rows", "channels", "groups", "ms", "best_ms", "gflop_per_s",
                                   "speedup_vs_conv2d", "max_abs_diff"],
                    "one decoder convolution, forward + backward")
    write_json(args.json, machine, {**vars(args), "json": str(args.json)}, results, decoder_convolution=decoder_rows)


if __name__ == "__main__":
    main()
