"""An independent forward of the original weights: the official architecture (`models/images.py`, `models/modules.py`
of the EAT repository) written with plain torch ops on the official key names, which every converted model must
reproduce within `TOLERANCE`."""

import torch
import torch.nn.functional as F

from ..configuration_eat import EATConfig
from ..loading_eat import HUB_PORT_FC_NORM_EPS
from .layouts import HUB_PORT, SourceCheckpoint, SourceLayout


TOLERANCE = 1e-4
# The official LayerNorm of the decoder and of the teacher targets (fairseq / F.layer_norm default).
DECODER_NORM_EPS = 1e-5


def reference_encoder(weights, layout: SourceLayout, spectrogram, num_heads: int, eps: float):
    """Official forward of one encoder: returns (output of the last block, each block's FFN output)."""
    encoder, blocks = layout.encoder_prefix, layout.blocks_prefix
    patch_weight = weights[f"{encoder}local_encoder.proj.weight"]
    patch_size = patch_weight.shape[-1]
    patch_bias = weights[f"{encoder}local_encoder.proj.bias"]
    patches = F.conv2d(spectrogram[:, None], patch_weight, patch_bias, stride=patch_size)
    patches = patches.flatten(2).transpose(1, 2)
    patches = patches + weights[layout.positions_key][:, : patches.shape[1]]
    batch_size, _, width = patches.shape
    cls = weights[f"{encoder}extra_tokens"].expand(batch_size, -1, -1)
    x = F.layer_norm(
        torch.cat([cls, patches], dim=1), (width,),
        weights[f"{encoder}{layout.context_norm}.weight"], weights[f"{encoder}{layout.context_norm}.bias"], eps,
    )
    num_tokens, head_dim = x.shape[1], width // num_heads
    ffn_outputs = []
    index = 0
    while f"{blocks}{index}.attn.qkv.weight" in weights:
        p = f"{blocks}{index}."
        qkv = F.linear(x, weights[p + "attn.qkv.weight"], weights.get(p + "attn.qkv.bias"))
        q, k, v = qkv.reshape(batch_size, num_tokens, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * head_dim**-0.5
        attention = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
        attended = (attention @ v).transpose(1, 2).reshape(batch_size, num_tokens, width)
        attended = F.linear(attended, weights[p + "attn.proj.weight"], weights[p + "attn.proj.bias"])
        x = F.layer_norm(x + attended, (width,), weights[p + "norm1.weight"], weights[p + "norm1.bias"], eps)
        hidden = F.gelu(F.linear(x, weights[p + "mlp.fc1.weight"], weights[p + "mlp.fc1.bias"]))
        ffn = F.linear(hidden, weights[p + "mlp.fc2.weight"], weights[p + "mlp.fc2.bias"])
        ffn_outputs.append(ffn)
        x = F.layer_norm(x + ffn, (width,), weights[p + "norm2.weight"], weights[p + "norm2.bias"], eps)
        index += 1
    return x, ffn_outputs


def reference_teacher_targets(ffn_outputs, top_k: int):
    layers = [F.instance_norm(ffn[:, 1:].transpose(1, 2)).transpose(1, 2) for ffn in ffn_outputs[-top_k:]]
    targets = torch.stack(layers).mean(dim=0)
    targets = F.layer_norm(targets, targets.shape[-1:])
    return targets, targets.mean(dim=1)


def reference_decoder(weights, layout: SourceLayout, tokens, num_time_patches: int):
    batch_size, num_patches, channels = tokens.shape
    grid = tokens.transpose(1, 2).reshape(batch_size, channels, num_time_patches, num_patches // num_time_patches)
    index = 0
    while f"{layout.decoder_prefix}blocks.{index}.0.weight" in weights:
        conv_weight = weights[f"{layout.decoder_prefix}blocks.{index}.0.weight"]
        out = F.conv2d(
            grid, conv_weight, weights[f"{layout.decoder_prefix}blocks.{index}.0.bias"],
            padding=conv_weight.shape[-1] // 2, groups=grid.shape[1] // conv_weight.shape[1],
        )
        out = F.layer_norm(out.permute(0, 2, 3, 1), out.shape[1:2], eps=DECODER_NORM_EPS).permute(0, 3, 1, 2)
        grid = F.gelu(out) + grid
        index += 1
    flat = grid.reshape(batch_size, grid.shape[1], -1).transpose(1, 2)
    return F.linear(flat, weights[f"{layout.decoder_prefix}proj.weight"], weights[f"{layout.decoder_prefix}proj.bias"])


def verification_inputs(config: EATConfig, max_position_rows: int):
    """Fixed inputs: a 256-frame spectrogram batch (shorter if the positional table is), and decoder tokens."""
    generator = torch.Generator().manual_seed(0)
    num_time_patches = min(256 // config.patch_size, max_position_rows // config.num_freq_patches)
    spectrogram = torch.randn(2, num_time_patches * config.patch_size, config.num_mel_bins, generator=generator)
    tokens = torch.randn(2, num_time_patches * config.num_freq_patches, config.hidden_size, generator=generator)
    return spectrogram, tokens, num_time_patches


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


@torch.no_grad()
def compare_with_reference(model, source: SourceCheckpoint, target: str, use_ema: bool, weights) -> dict[str, float]:
    """Max |difference| between the converted model and the independent reference, per compared output."""
    config, layout = model.config, source.layout
    rows = weights[layout.positions_key].shape[-2]
    spectrogram, tokens, num_time_patches = verification_inputs(config, rows)
    heads, eps = config.num_attention_heads, config.layer_norm_eps
    results = {}
    if target == "encoder":
        encoder_layout = layout.teacher() if use_ema else layout
        reference, _ = reference_encoder(weights, encoder_layout, spectrogram, heads, eps)
        name = "teacher" if use_ema else "student"
        results[f"{name} last_hidden_state"] = max_difference(model(spectrogram).last_hidden_state, reference)
        return results
    reference, _ = reference_encoder(weights, layout, spectrogram, heads, eps)
    results["student last_hidden_state"] = max_difference(model.eat(spectrogram).last_hidden_state, reference)
    if target == "classification":
        prefix = layout.head_prefix
        cls = reference[:, 0] if config.classifier_pooling == "cls" else reference[:, 1:].mean(dim=1)
        if config.use_fc_norm:
            # Each source's own math: the hub port's head normalises with another eps than fairseq's.
            fc_norm_eps = HUB_PORT_FC_NORM_EPS if layout is HUB_PORT else eps
            cls = F.layer_norm(
                cls, cls.shape[-1:], weights[f"{prefix}fc_norm.weight"], weights[f"{prefix}fc_norm.bias"], fc_norm_eps
            )
        reference_logits = F.linear(cls, weights[f"{prefix}head.weight"], weights[f"{prefix}head.bias"])
        results["logits"] = max_difference(model(spectrogram).logits, reference_logits)
    if target == "pretraining":
        teacher_layout = layout.teacher()
        teacher_reference, ffn_outputs = reference_encoder(weights, teacher_layout, spectrogram, heads, eps)
        results["teacher last_hidden_state"] = max_difference(
            model.teacher.encoder(spectrogram).last_hidden_state, teacher_reference
        )
        frame_targets, utterance_targets = model.teacher(spectrogram)
        reference_frame, reference_utterance = reference_teacher_targets(ffn_outputs, model.teacher.num_target_layers)
        results["teacher frame targets"] = max_difference(frame_targets, reference_frame)
        results["teacher utterance targets"] = max_difference(utterance_targets, reference_utterance)
        results["decoder output"] = max_difference(
            model.decoder(tokens, num_time_patches), reference_decoder(weights, layout, tokens, num_time_patches)
        )
    return results


@torch.no_grad()
def hub_port_eps_effect(source: SourceCheckpoint, config: EATConfig, weights) -> float:
    """How far the hub port's logits (fc_norm eps 1e-5) lie from the official fairseq model's (eps 1e-6)."""
    spectrogram, _, _ = verification_inputs(config, weights[source.layout.positions_key].shape[-2])
    hidden, _ = reference_encoder(
        weights, source.layout, spectrogram, config.num_attention_heads, config.layer_norm_eps
    )
    prefix = source.layout.head_prefix
    logits = [
        F.linear(
            F.layer_norm(hidden[:, 0], (config.hidden_size,), weights[f"{prefix}fc_norm.weight"],
                         weights[f"{prefix}fc_norm.bias"], eps),
            weights[f"{prefix}head.weight"], weights[f"{prefix}head.bias"],
        )
        for eps in (config.layer_norm_eps, HUB_PORT_FC_NORM_EPS)
    ]
    return max_difference(*logits)


__all__ = ["TOLERANCE", "compare_with_reference", "hub_port_eps_effect"]
