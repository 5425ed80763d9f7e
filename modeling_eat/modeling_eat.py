# Copyright 2026 The modeling_eat authors.
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in compliance with
# the License. You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software distributed under the License is distributed on
# an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the License for the
# specific language governing permissions and limitations under the License.
"""PyTorch EAT (Efficient Audio Transformer, Chen et al. 2024, arXiv 2401.03497).

An audio ViT over 16x16 patches of a Kaldi log-mel spectrogram, pre-trained data2vec-2.0 style: a student sees the
visible patches of an inverse-block-masked clip, a lightweight CNN decoder predicts the targets an EMA teacher computes
from the whole clip (frame loss), and the student's CLS token predicts their mean (utterance loss). MaskSpec (random
masks, a Transformer decoder reconstructing the hidden spectrogram patches) is the second pre-training objective of the
same encoder.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_eat import EATConfig
from .loading_eat import load_pretrained, review_loaded_keys
from .masking_eat import EATMaskGenerator, EATMaskIndex, drop_masked_tokens


UTTERANCE_LOSS_REDUCTIONS = ("sum", "mean")


@dataclass
class EATModelOutput(BaseModelOutputWithPooling):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, 1 + num_patches, hidden_size)`):
        Output of the last block, CLS first. EAT has no final LayerNorm.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        The CLS token of the last block (the utterance-level embedding).
    ffn_outputs (`tuple(torch.FloatTensor)`, *optional*, returned when `output_ffn_outputs=True`):
        Each block's feed-forward output before its residual and LayerNorm: what the EMA teacher's targets are made of.
    """

    ffn_outputs: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class EATForPreTrainingOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`):
        The training objective: `frame_loss + utterance_loss_weight * utterance_loss` (EAT, see
        [`utterance_frame_loss`]), or the masked patch MSE (MaskSpec).
    frame_loss (`torch.FloatTensor` of shape `()`):
        Frame-level regression loss over the masked patches.
    utterance_loss (`torch.FloatTensor` of shape `()`, *optional*):
        CLS-vs-mean-target loss (EAT only), summed over the batch's rows or averaged, as `utterance_loss_reduction`.
    logits (`torch.FloatTensor` of shape `(batch_size * clones, num_patches, dim)`):
        Decoder predictions for every patch position (teacher space for EAT, spectrogram patches for MaskSpec).
    bool_masked_pos (`torch.BoolTensor` of shape `(batch_size * clones, num_patches)`):
        The mask used, True where the student did not see the patch.
    target_std (`torch.FloatTensor` of shape `()`):
        Mean over channels of the targets' standard deviation across the masked patches; a collapse to one target
        shows as ~0. EAT's targets are instance-normalised per clip, so it stays near 1 whatever they hold.
    prediction_std (`torch.FloatTensor` of shape `()`):
        The same statistic for the predictions.
    target_position_share (`torch.FloatTensor` of shape `()`):
        The share of the targets' variance that the patch position alone explains, over the batch's clips (see
        [`position_share`]): targets that say where a patch is rather than what it holds make the task trivial.
    """

    loss: torch.FloatTensor | None = None
    frame_loss: torch.FloatTensor | None = None
    utterance_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    bool_masked_pos: torch.BoolTensor | None = None
    target_std: torch.FloatTensor | None = None
    prediction_std: torch.FloatTensor | None = None
    target_position_share: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def sincos_position_table(num_time_patches: int, num_freq_patches: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positions `[num_time_patches * num_freq_patches, dim]`, row index `t * num_freq + f`.

    As in EAT (MAE style): the first half of the channels encodes the frequency index, the second half the time
    index; within each half, sines come before cosines.
    """
    if dim % 4 != 0:
        raise ValueError(f"hidden_size must be a multiple of 4 for 2-D sin-cos positions, got {dim}")
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half // 2, dtype=torch.float64) / (half / 2))
    time_index = torch.arange(num_time_patches, dtype=torch.float64).repeat_interleave(num_freq_patches)
    freq_index = torch.arange(num_freq_patches, dtype=torch.float64).repeat(num_time_patches)

    def encode(positions):
        angles = positions[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(freq_index), encode(time_index)], dim=1).float()


def patch_attention_mask(attention_mask: torch.Tensor, patch_size: int, num_freq_patches: int) -> torch.Tensor:
    """Frame mask `(batch, frames)` → patch mask `(batch, patches)`: a patch row is real if any of its frames is."""
    batch_size, num_frames = attention_mask.shape
    rows = attention_mask.view(batch_size, num_frames // patch_size, patch_size).any(dim=-1)
    return rows.repeat_interleave(num_freq_patches, dim=1)


class EATPatchEmbeddings(nn.Module):
    """Non-overlapping 16x16 convolution over `(batch, frames, mel)`; token index is `time_patch * 8 + freq_patch`."""

    def __init__(self, config: EATConfig):
        super().__init__()
        self.projection = nn.Conv2d(1, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.projection(input_values.unsqueeze(1)).flatten(2).transpose(1, 2)


class EATEmbeddings(nn.Module):
    """Patches + fixed positions, (optionally) masked patches dropped, CLS prepended, then the embedding LayerNorm."""

    def __init__(self, config: EATConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = EATPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        # Not a weight: recomputed at init, so checkpoints stay small and any table length loads.
        self.register_buffer(
            "position_embeddings",
            sincos_position_table(config.max_time_patches, config.num_freq_patches, config.hidden_size)[None],
            persistent=False,
        )
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def embed_patches(self, input_values: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embeddings(input_values)
        # The table is built in fp32 at init and `from_pretrained(dtype=...)` does not cast non-persistent buffers.
        return patches + self.position_embeddings[:, : patches.shape[1]].to(patches.dtype)

    def forward(
        self,
        input_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        num_visible_patches: int | None = None,
    ) -> torch.Tensor:
        patches = self.embed_patches(input_values)
        if bool_masked_pos is not None:
            # Patch embedding runs once per clip; the clip's clones (rows of the mask) share it.
            clones = bool_masked_pos.shape[0] // patches.shape[0]
            patches = drop_masked_tokens(
                patches.repeat_interleave(clones, dim=0), bool_masked_pos, num_visible_patches
            )
        cls_tokens = self.cls_token.expand(patches.shape[0], -1, -1)
        return self.layer_norm(torch.cat([cls_tokens, patches], dim=1))


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
):
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    # fp32 softmax as in the official blocks, so bf16/fp16 runs match them.
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class EATAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (rows ordered q | k | v, as in the checkpoints)."""

    def __init__(self, config: EATConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        input_shape = hidden_states.shape[:-1]
        qkv = self.qkv_proj(hidden_states).view(*input_shape, 3, -1, self.head_dim).permute(2, 0, 3, 1, 4)
        query_states, key_states, value_states = qkv.unbind(0)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = self.o_proj(attn_output.reshape(*input_shape, -1).contiguous())
        return attn_output, attn_weights


class EATMLP(nn.Module):
    def __init__(self, config: EATConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class EATDropPath(nn.Module):
    """Stochastic depth: drops a sample's whole residual branch, rescaling the kept ones."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return hidden_states
        keep_prob = 1.0 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.dim() - 1)
        keep = hidden_states.new_empty(shape).bernoulli_(keep_prob)
        return hidden_states * keep / keep_prob


class EATLayer(GradientCheckpointingLayer):
    """Post-LN block: `x = norm1(x + attn(x)); x = norm2(x + mlp(x))`. Its MLP output is the teacher's target."""

    def __init__(self, config: EATConfig, drop_path_rate: float = 0.0):
        super().__init__()
        self.attention = EATAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = EATMLP(config)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.drop_path = EATDropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        # Self Attention
        residual = hidden_states
        hidden_states, _ = self.attention(hidden_states, attention_mask, **kwargs)
        hidden_states = self.attention_norm(residual + self.drop_path(self.dropout(hidden_states)))

        # Fully Connected
        residual = hidden_states
        hidden_states = self.mlp(hidden_states)
        hidden_states = self.output_norm(residual + self.drop_path(self.dropout(hidden_states)))
        return hidden_states


class EATPreTrainedModel(PreTrainedModel):
    config: EATConfig
    base_model_prefix = "eat"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["EATEmbeddings", "EATLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False
    _can_record_outputs = {
        "hidden_states": EATLayer,
        "attentions": EATAttention,
        "ffn_outputs": OutputRecorder(EATMLP, index=0),
    }
    # A pre-training folder holds the teacher and decoder beside the student: loading the encoder (or a
    # classifier) from it takes the student and leaves those on purpose. The hub port stores its fixed sin-cos
    # table, which is recomputed here (`EATEmbeddings`).
    _keys_to_ignore_on_load_unexpected = [
        r"^teacher\.",
        r"^decoder\.",
        r"(^|\.)fixed_positional_encoder\.positions$",
    ]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        # transformers skips the `_init_weights` of remote-code modules that hold no parameter of their own (e.g.
        # EATPatchEmbeddings, EATForAudioClassification): their children are initialised from a parent that has one.
        if isinstance(module, EATEmbeddings):
            # As the official init: xavier on the conv seen as a (hidden, 256) matrix.
            weight = module.patch_embeddings.projection.weight
            bound = math.sqrt(6.0 / (weight.shape[0] + weight[0].numel()))
            init.uniform_(weight, -bound, bound)
            init.normal_(module.cls_token, std=1.0)
            config = module.config
            init.copy_(
                module.position_embeddings,
                sincos_position_table(config.max_time_patches, config.num_freq_patches, config.hidden_size)[None],
            )
        elif isinstance(module, EATMaskSpecDecoder):
            init.normal_(module.mask_token, std=self.config.initializer_range)
            init.copy_(
                module.position_embeddings,
                sincos_position_table(
                    self.config.max_time_patches, self.config.num_freq_patches, module.position_embeddings.shape[-1]
                )[None],
            )
        elif module is getattr(self, "classifier", None):
            init.trunc_normal_(module.weight, std=0.02)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        r"""
        As [`~PreTrainedModel.from_pretrained`], for folders of this package and of the hub's remote-code port (the
        `worstchan/EAT-*` repositories): [`EATConfig`] translates the port's config, and its `model.*` weights are
        renamed on load (transformers' `key_mapping`, see `loading_eat.hub_port_key_mapping`). `save_pretrained` then
        writes this package's layout.

        Parts of another EAT class (a classification head, the pre-training teacher and decoder) that the checkpoint
        lacks are initialised and named in one warning; those it holds beyond this class are left out and named.
        Missing encoder weights are initialised too, as for any transformers model, with a warning that names the
        checkpoint's layout, how many encoder weights matched, and the fix. `output_loading_info` lists every key.
        """
        return load_pretrained(super().from_pretrained, pretrained_model_name_or_path, *model_args, **kwargs)

    def _adjust_missing_and_unexpected_keys(self, loading_info) -> None:
        # transformers' hook for the key differences a model expects, run after loading and before the load report.
        super()._adjust_missing_and_unexpected_keys(loading_info)
        review_loaded_keys(self, loading_info)


class EATModel(EATPreTrainedModel):
    def __init__(self, config: EATConfig):
        super().__init__(config)
        self.config = config
        self.embeddings = EATEmbeddings(config)
        # On the CPU explicitly: under `with torch.device("meta")` a meta tensor could not be read back.
        drop_path_rates = torch.linspace(0, config.drop_path_rate, config.num_hidden_layers, device="cpu").tolist()
        self.layers = nn.ModuleList([EATLayer(config, rate) for rate in drop_path_rates])
        self.post_init()

    def get_input_embeddings(self) -> EATPatchEmbeddings:
        return self.embeddings.patch_embeddings

    def check_input_values(self, input_values: torch.Tensor) -> torch.Tensor:
        """Accepts `(batch, frames, mel)` or the official `(batch, 1, frames, mel)`; rejects shapes EAT cannot take."""
        if input_values.dim() == 4 and input_values.shape[1] == 1:
            input_values = input_values.squeeze(1)
        if input_values.dim() != 3:
            raise ValueError(
                f"input_values must have shape (batch, frames, num_mel_bins), got {tuple(input_values.shape)}: "
                "compute it with EATFeatureExtractor."
            )
        _, num_frames, num_mel_bins = input_values.shape
        patch_size, max_frames = self.config.patch_size, self.config.max_input_frames
        if num_mel_bins != self.config.num_mel_bins:
            raise ValueError(f"input_values has {num_mel_bins} mel bins; this model takes {self.config.num_mel_bins}.")
        if num_frames % patch_size != 0 or num_frames == 0:
            raise ValueError(
                f"input_values has {num_frames} frames, not a positive multiple of the patch size {patch_size}: pad "
                f"or crop to a multiple of {patch_size} (EATFeatureExtractor(max_length=...) does this)."
            )
        if num_frames > max_frames:
            raise ValueError(
                f"input_values has {num_frames} frames, more than the positional table covers ({max_frames} frames: "
                "config.max_time_patches * patch_size): split the audio into shorter windows."
            )
        weight_dtype = self.embeddings.patch_embeddings.projection.weight.dtype
        if not input_values.is_floating_point():
            raise ValueError(
                f"input_values has dtype {input_values.dtype}: it must hold float fbank frames (EATFeatureExtractor "
                "gives them)."
            )
        # Under autocast the layers cast their inputs themselves.
        if input_values.dtype != weight_dtype and not torch.is_autocast_enabled(input_values.device.type):
            raise ValueError(
                f"input_values is {input_values.dtype} but the model's weights are {weight_dtype}: cast the inputs "
                "with `input_values.to(model.dtype)` (for the extractor's output, `inputs.to(model.dtype)`), or run "
                "the model under `torch.autocast`."
            )
        return input_values

    @staticmethod
    def check_attention_mask(attention_mask: torch.Tensor, input_values: torch.Tensor) -> None:
        """The frame mask must have one entry per frame of `input_values` `(batch, frames, mel)`."""
        expected = tuple(input_values.shape[:2])
        if tuple(attention_mask.shape) != expected:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, but input_values has {expected[0]} clips of "
                f"{expected[1]} frames: it needs shape {expected}, one entry per frame (1 real, 0 padding). Pass the "
                "attention_mask the feature extractor returned with these input_values (return_attention_mask=True)."
            )

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        num_visible_patches: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> EATModelOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_mel_bins)`):
            Normalised Kaldi log-mel frames from [`EATFeatureExtractor`]; `num_frames` a multiple of 16.
        attention_mask (`torch.LongTensor` of shape `(batch_size, num_frames)`, *optional*):
            1 for real frames, 0 for padding; patch rows made only of padding are hidden from attention.
        bool_masked_pos (`torch.BoolTensor` of shape `(batch_size * clones, num_patches)`, *optional*):
            True for patches to drop before the blocks (the student's view during pre-training). Every row must mask
            the same number of patches; each clip is repeated `clones` times.
        num_visible_patches (`int`, *optional*):
            The number of patches each row of `bool_masked_pos` leaves visible, when known on the host (e.g.
            `EATMaskGenerator.num_visible(num_time_patches, num_freq_patches)`). It spares reading the count back
            from the mask, a wait for the accelerator; the mask is checked against it (a `ValueError` on the CPU, a
            device-side assertion on an accelerator). When omitted, the count is read from the mask.

        Example:

        ```python
        >>> import numpy as np
        >>> from modeling_eat import EATConfig, EATFeatureExtractor, EATModel

        >>> feature_extractor = EATFeatureExtractor()
        >>> model = EATModel(EATConfig.from_preset("tiny")).eval()
        >>> waveform = np.random.default_rng(0).uniform(-0.1, 0.1, 16000).astype(np.float32)  # 1 s, 16 kHz, mono
        >>> inputs = feature_extractor(waveform, sampling_rate=16000, max_length=96, return_tensors="pt")
        >>> outputs = model(**inputs)
        >>> outputs.pooler_output.shape  # the CLS token: the clip's embedding
        torch.Size([1, 64])
        >>> outputs.last_hidden_state.shape  # CLS + 6 time rows x 8 frequency patches
        torch.Size([1, 49, 64])

        ```"""
        input_values = self.check_input_values(input_values)
        hidden_states = self.embeddings(input_values, bool_masked_pos, num_visible_patches)

        if attention_mask is not None:
            self.check_attention_mask(attention_mask, input_values)
            token_mask = patch_attention_mask(attention_mask, self.config.patch_size, self.config.num_freq_patches)
            if bool_masked_pos is not None:
                clones = bool_masked_pos.shape[0] // token_mask.shape[0]
                token_mask = drop_masked_tokens(
                    token_mask.repeat_interleave(clones, dim=0), bool_masked_pos, num_visible_patches
                )
            token_mask = F.pad(token_mask, (1, 0), value=True)
            attention_mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=hidden_states, attention_mask=token_mask
            )

        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask, **kwargs)
        return EATModelOutput(last_hidden_state=hidden_states, pooler_output=hidden_states[:, 0])


class EATForAudioClassification(EATPreTrainedModel):
    """EAT with a classification head: CLS (or mean of patches) → LayerNorm → Linear, as the official fine-tuning."""

    def __init__(self, config: EATConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.eat = EATModel(config)
        fc_norm_eps = config.layer_norm_eps if config.fc_norm_eps is None else config.fc_norm_eps
        self.fc_norm = nn.LayerNorm(config.hidden_size, eps=fc_norm_eps) if config.use_fc_norm else nn.Identity()
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def freeze_feature_encoder(self):
        """Freezes the patch embedding, so transformers' `run_audio_classification.py` (which calls this) runs."""
        self.eat.embeddings.patch_embeddings.requires_grad_(False)

    def pool(self, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.config.classifier_pooling == "cls":
            return last_hidden_state[:, 0]
        patches = last_hidden_state[:, 1:]
        if attention_mask is None:
            return patches.mean(dim=1)
        weights = patch_attention_mask(attention_mask, self.config.patch_size, self.config.num_freq_patches)
        weights = weights.to(patches.dtype).unsqueeze(-1)
        return (patches * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, or `torch.FloatTensor` `(batch_size, num_labels)`):
            Class indices (cross-entropy) or multi-hot floats (binary cross-entropy, e.g. AudioSet).

        Example:

        ```python
        >>> import torch
        >>> from modeling_eat import EATConfig, EATForAudioClassification

        >>> model = EATForAudioClassification(EATConfig.from_preset("tiny", num_labels=3)).eval()
        >>> spectrogram = torch.randn(2, 96, 128)  # (batch, frames, mel): from EATFeatureExtractor in practice
        >>> outputs = model(spectrogram, labels=torch.tensor([0, 2]))
        >>> outputs.logits.shape
        torch.Size([2, 3])
        >>> outputs.loss.backward()

        ```"""
        outputs = self.eat(input_values, attention_mask=attention_mask, **kwargs)
        logits = self.classifier(self.fc_norm(self.pool(outputs.last_hidden_state, attention_mask)))
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def patchify(input_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`(batch, frames, mel)` → `(batch, patches, patch_size**2)`, patches in the order of the patch embedding."""
    batch_size, num_frames, num_mel_bins = input_values.shape
    patches = input_values.reshape(
        batch_size, num_frames // patch_size, patch_size, num_mel_bins // patch_size, patch_size
    )
    return patches.permute(0, 1, 3, 2, 4).reshape(batch_size, -1, patch_size * patch_size)


def utterance_frame_loss(
    frame_predictions: torch.Tensor,
    frame_targets: torch.Tensor,
    utterance_predictions: torch.Tensor,
    utterance_targets: torch.Tensor,
    utterance_loss_weight: float,
    utterance_loss_reduction: str = "sum",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EAT's Utterance-Frame Objective. Returns `(loss, frame_loss, utterance_loss)` with
    `loss = frame_loss + utterance_loss_weight * utterance_loss`.

    Both terms are squared errors summed over the channels and scaled by `1/sqrt(hidden_size)`, as in EAT. The frame
    loss is their mean over the masked patches of the batch. The utterance loss is, with `"sum"` (the official
    objective), their sum over the batch's `batch_size * clones` CLS predictions: fairseq multiplies the CLS term by
    the number of masked patches before it divides every gradient by that number (fairseq's
    `criterions/model_criterion.py`). With `"mean"` it is their mean over those rows, which keeps the balance of the
    two terms whatever the batch size.

    "The batch" is one forward pass: one device's micro-batch. Under DDP and DeepSpeed the gradients are averaged
    over the devices and under gradient accumulation over the micro-batches, so the official utterance term weighs
    `per_device_train_batch_size * clone_batch` rows (12 x 16 = 192 in the AS-2M recipe), however many devices or
    accumulation steps the run uses, exactly as in fairseq, where every device holds the same number of masked patches.
    """
    if utterance_loss_reduction not in UTTERANCE_LOSS_REDUCTIONS:
        raise ValueError(
            f"utterance_loss_reduction must be one of {UTTERANCE_LOSS_REDUCTIONS}, got {utterance_loss_reduction!r}"
        )
    scale = frame_targets.shape[-1] ** -0.5
    frame_loss = (frame_predictions.float() - frame_targets.float()).pow(2).sum(dim=-1).mean() * scale
    utterance_errors = (utterance_predictions.float() - utterance_targets.float()).pow(2).sum(dim=-1) * scale
    utterance_loss = utterance_errors.sum() if utterance_loss_reduction == "sum" else utterance_errors.mean()
    return frame_loss + utterance_loss_weight * utterance_loss, frame_loss, utterance_loss


def mean_channel_std(values: torch.Tensor) -> torch.Tensor:
    """Mean over channels of the standard deviation across rows: the statistic data2vec logs to spot a collapse."""
    values = values.detach().float().reshape(-1, values.shape[-1])
    return torch.sqrt(values.var(dim=0) + 1e-6).mean()


def position_share(targets: torch.Tensor) -> torch.Tensor:
    """The share of the variance of per-clip targets `(clips, patches, dim)` that the patch position explains: the
    variance across positions of the mean over clips, over the total variance. The mean over `n` clips keeps `1/n`
    of the variance that does not depend on position, which is removed, so unrelated clips give ~0; with one clip
    there is nothing to compare and the share is 1."""
    targets = targets.detach().float()
    num_clips = targets.shape[0]
    centred = targets - targets.mean(dim=(0, 1))
    share = centred.mean(dim=0).pow(2).mean() / centred.pow(2).mean().clamp(min=1e-12)
    if num_clips == 1:
        return share
    return ((share * num_clips - 1) / (num_clips - 1)).clamp(0.0, 1.0)


# With `ema_scale_with_run`, the teacher's horizon (1 / (1 - decay) updates) starts at the run's length and is annealed
# to ten runs by its end. Measured on two held-out speakers of FSDD (FIDELITY.md): the official schedule's proportions
# scaled down to a short run (horizons of 1/80 and 1/4 of it) make the teacher follow a student that a short,
# high-learning-rate run moves fast, and its targets taught less than those of this slower teacher (linear probe
# +0.11 and +0.29 over random init with it, -0.03 and +0.20 with the official proportions).
RUN_FITTED_START_HORIZON = 1.0
RUN_FITTED_END_HORIZON = 10.0


def ema_schedule(config: EATConfig, run_length: int | None = None) -> tuple[float, float, int]:
    """`(decay at the first update, decay at the end, updates over which it is annealed)`: the config's `ema_decay`,
    `ema_end_decay` and `ema_anneal_end_step`; with `ema_scale_with_run` and the run's length known, fitted to the
    run instead: a horizon of `RUN_FITTED_START_HORIZON` runs at the first update, annealed linearly over the run to
    `RUN_FITTED_END_HORIZON` runs (a horizon is at least one update: decay 0, the teacher copies the student)."""
    if not (config.ema_scale_with_run and run_length):
        return config.ema_decay, config.ema_end_decay, config.ema_anneal_end_step
    return (
        1.0 - 1.0 / max(1.0, RUN_FITTED_START_HORIZON * run_length),
        1.0 - 1.0 / max(1.0, RUN_FITTED_END_HORIZON * run_length),
        max(1, run_length),
    )


def ema_decay_schedule(
    config: EATConfig, num_updates: int | torch.Tensor, run_length: int | None = None
) -> torch.Tensor:
    """The EMA teacher's decay after `num_updates` updates (an int or a tensor of counts) on the schedule
    `ema_schedule(config, run_length)`: linear from its first decay to its end decay over its anneal steps, then
    constant. Computed on the counts' device in float64, like Python floats (float32 on MPS, which has no float64)."""
    start, end, anneal_steps = ema_schedule(config, run_length)
    step = torch.as_tensor(num_updates)
    dtype = torch.float32 if step.device.type == "mps" else torch.float64
    # In this order of operations the float64 result equals Python-float arithmetic to the bit.
    increment = (end - start) * step.to(dtype) / anneal_steps
    annealed = start + increment
    return torch.where(step >= anneal_steps, end, annealed)


class EATTeacher(nn.Module):
    """The EMA teacher: a frozen full copy of the student encoder that turns whole clips into regression targets.

    Its weights are fp32 master weights, moved towards the student's by `update()` after every optimizer step with a
    decay annealed linearly from `ema_decay` to `ema_end_decay` over `ema_anneal_end_step` updates, or, with
    `ema_scale_with_run`, on a schedule fitted to the run it is told of (`fit_schedule_to_run`). In bf16 one
    update would change almost none of a weight matrix's entries (0.1% measured at decay 0.9998; they round back),
    so the teacher stays fp32 however the model is built or cast: `from_config(..., dtype=...)`, `from_pretrained(...,
    dtype=...)` (`_keep_in_fp32_modules_strict`), `.to(torch.bfloat16)`, `.half()`. The update count is a buffer,
    so it is saved and resumed with the weights.
    """

    def __init__(self, config: EATConfig):
        super().__init__()
        self.config = config
        self.num_target_layers = config.average_top_k_layers or config.num_hidden_layers
        if not 1 <= self.num_target_layers <= config.num_hidden_layers:
            raise ValueError(
                f"average_top_k_layers ({config.average_top_k_layers}) must lie in [1, num_hidden_layers = "
                f"{config.num_hidden_layers}]; leave it unset to average all layers"
            )
        # Built under the model's dtype (`from_config(dtype=torch.bfloat16)` sets torch's default): made fp32 here.
        self.encoder = EATModel(config).float()
        self.encoder.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.run_length: int | None = None

    def fit_schedule_to_run(self, num_updates: int) -> None:
        """Tells the teacher how many updates the run makes. With `config.ema_scale_with_run` its schedule then
        follows the run (`ema_schedule`); otherwise the config's schedule stands. A resumed run tells it again."""
        self.run_length = int(num_updates)

    def _apply(self, fn, recurse=True):
        # Every cast and move of a module goes through `_apply`: the teacher follows the moves but keeps fp32.
        def keep_fp32(tensor):
            applied = fn(tensor)
            if tensor.dtype == torch.float32 and applied.dtype in (torch.float16, torch.bfloat16):
                return tensor.to(applied.device)
            return applied

        return super()._apply(keep_fp32, recurse)

    def train(self, mode: bool = True):
        # Dropout or drop-path in the teacher would make the targets noisy: it always runs in eval mode.
        # `from_pretrained` loads weights as trainable Parameters and then calls `eval()`: freeze them again here,
        # or optimizers (DeepSpeed's ZeRO above all) would take the teacher as trainable.
        self.encoder.requires_grad_(False)
        return super().train(False)

    def ema_decay(self, num_updates: int | torch.Tensor | None = None) -> torch.Tensor:
        """The decay applied after `num_updates` updates (by default the one the next `update()` applies), as a
        0-dim tensor on the count's device, so that the per-step update never waits for the accelerator; convert it
        with `float()` only to log it."""
        return ema_decay_schedule(
            self.config, self.num_updates if num_updates is None else num_updates, self.run_length
        )

    @torch.no_grad()
    def update(self, student: EATModel) -> torch.Tensor:
        """`teacher = decay * teacher + (1 - decay) * student` over all weights; returns the decay used, a 0-dim
        tensor on the teacher's device (converting it to a float waits for the device: do it only when logging)."""
        teacher_params = list(self.encoder.parameters())
        student_params = [p.detach().to(t.dtype) for t, p in zip(teacher_params, student.parameters())]
        if len(teacher_params) != len(list(student.parameters())):
            raise ValueError("the student and the teacher have different parameter lists; they must be the same EAT")
        decay = self.ema_decay()
        # Rounded once to the weights' dtype, so that the update equals a lerp by a Python-float weight bit for bit.
        # No `_foreach_lerp_` overload takes one tensor weight; the list overload broadcasts a 0-dim weight per
        # tensor (a lerp kernel per tensor rather than one fused launch, and no host read).
        weight = (1.0 - decay).to(teacher_params[0].dtype)
        torch._foreach_lerp_(teacher_params, student_params, [weight] * len(teacher_params))
        self.num_updates += 1
        return decay

    @torch.no_grad()
    def distance_to(self, student: EATModel) -> torch.Tensor:
        """`||teacher - student|| / ||student||` over all weights, a 0-dim tensor: how far the network that makes the
        targets lags behind the one being trained (0 while the teacher is the student's copy, as at the start; it grows
        when the student moves away from a teacher that follows too slowly)."""
        pairs = list(zip(self.encoder.parameters(), student.parameters()))
        difference = torch.stack([(t.float() - s.float()).pow(2).sum() for t, s in pairs]).sum()
        norm = torch.stack([s.float().pow(2).sum() for _, s in pairs]).sum()
        return (difference / norm).sqrt()

    @torch.no_grad()
    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns frame targets `(batch, patches, hidden)` and utterance targets `(batch, hidden)`.

        Each of the top-K blocks' feed-forward outputs (CLS dropped) is instance-normalised over the patches, the K
        are averaged, and the average is layer-normalised; the utterance target is its mean over the patches.
        """
        # The weights stay fp32 when the student is loaded in bf16/fp16; under autocast this cast changes nothing.
        input_values = input_values.to(self.encoder.dtype)
        outputs = self.encoder(input_values, attention_mask=attention_mask, output_ffn_outputs=True)
        top_layers = outputs.ffn_outputs[-self.num_target_layers :]
        targets = sum(
            F.instance_norm(layer[:, 1:].float().transpose(1, 2)).transpose(1, 2) for layer in top_layers
        ) / len(top_layers)
        targets = F.layer_norm(targets, targets.shape[-1:])
        return targets, targets.mean(dim=1)


class EATDecoderBlock(nn.Module):
    """Grouped 2-D convolution over the patch grid → LayerNorm over channels (no affine) → GELU."""

    def __init__(self, config: EATConfig, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=config.decoder_kernel_size,
            padding=config.decoder_kernel_size // 2,
            groups=config.decoder_groups,
        )
        self.activation = nn.GELU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv(hidden_states)
        hidden_states = F.layer_norm(hidden_states.movedim(1, -1), hidden_states.shape[1:2]).movedim(-1, 1)
        return self.activation(hidden_states)


class EATCNNDecoder(nn.Module):
    """EAT's lightweight decoder: conv blocks on the `(time, frequency)` patch grid, each with a residual.

    Position reaches it only through the grid layout: `decoder_input` fills the hidden slots with fresh noise, not a
    learned token.
    """

    def __init__(self, config: EATConfig):
        super().__init__()
        self.config = config
        self.hidden_size = config.decoder_hidden_size or config.hidden_size
        groups, kernel_size = config.decoder_groups, config.decoder_kernel_size
        problems = []
        if kernel_size % 2 != 1:
            problems.append(f"decoder_kernel_size must be odd so the decoder keeps the patch grid, got {kernel_size}")
        if self.hidden_size % groups or config.hidden_size % groups:
            problems.append(
                f"decoder_groups ({groups}) must divide hidden_size ({config.hidden_size}) and decoder_hidden_size "
                f"({self.hidden_size})"
            )
        if problems:
            raise ValueError(f"EAT's CNN decoder cannot be built: {'; '.join(problems)}")
        channels = [config.hidden_size] + [self.hidden_size] * config.decoder_num_layers
        self.layers = nn.ModuleList(
            [EATDecoderBlock(config, channels[i], channels[i + 1]) for i in range(config.decoder_num_layers)]
        )
        self.projection = nn.Linear(self.hidden_size, config.hidden_size)

    def decoder_input(
        self, visible: torch.Tensor, mask_index: EATMaskIndex, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The student's visible tokens `(rows, visible, hidden)` on the full patch grid, hidden slots drawn from
        N(0, mask_noise_std²) afresh each step."""
        num_patches = mask_index.order.shape[1]
        noise = torch.randn(
            visible.shape[0], num_patches, visible.shape[-1], generator=generator, device=visible.device,
            dtype=visible.dtype,
        )
        return mask_index.restore(visible, noise * self.config.mask_noise_std)

    def forward(self, hidden_states: torch.Tensor, num_time_patches: int) -> torch.Tensor:
        """`(batch, patches, hidden)` in grid order → predictions of the same shape."""
        batch_size, num_patches, channels = hidden_states.shape
        grid = hidden_states.transpose(1, 2).reshape(batch_size, channels, num_time_patches, -1)
        for layer in self.layers:
            residual = grid
            grid = layer(grid)
            if grid.shape == residual.shape:
                grid = grid + residual
        return self.projection(grid.flatten(2).transpose(1, 2))


class EATMaskSpecDecoder(nn.Module):
    """MaskSpec's light Transformer decoder: visible tokens + a learned mask token, learned positions, EAT blocks,
    and a linear map to the `patch_size**2` spectrogram values of every patch."""

    def __init__(self, config: EATConfig):
        super().__init__()
        # Unset sizes follow the encoder: at most 512 wide (MaskSpec's decoder is light), 64-wide heads, 4x MLP.
        hidden_size = config.maskspec_decoder_hidden_size or min(512, config.hidden_size)
        num_heads = config.maskspec_decoder_num_attention_heads or max(1, hidden_size // 64)
        if hidden_size % num_heads or hidden_size % 4:
            raise ValueError(
                f"maskspec_decoder_hidden_size ({hidden_size}) must be a multiple of "
                f"maskspec_decoder_num_attention_heads ({num_heads}) and of 4 (its sin-cos initial positions)"
            )
        decoder_config = EATConfig(
            hidden_size=hidden_size,
            num_attention_heads=num_heads,
            intermediate_size=config.maskspec_decoder_intermediate_size or 4 * hidden_size,
            hidden_act=config.hidden_act,
            layer_norm_eps=config.layer_norm_eps,
            qkv_bias=config.qkv_bias,
        )
        decoder_config._attn_implementation = config._attn_implementation
        self.embed = nn.Linear(config.hidden_size, hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, config.max_time_patches * config.num_freq_patches, hidden_size)
        )
        self.layers = nn.ModuleList([EATLayer(decoder_config) for _ in range(config.maskspec_decoder_num_layers)])
        self.prediction = nn.Linear(hidden_size, config.patch_size * config.patch_size)

    def forward(self, student_hidden_states: torch.Tensor, mask_index: EATMaskIndex) -> torch.Tensor:
        """Student output `(rows, 1 + visible, hidden)` → predicted patches `(rows, patches, patch_size**2)`."""
        visible = self.embed(student_hidden_states[:, 1:])
        fill = self.mask_token.expand(*mask_index.order.shape, -1).to(visible.dtype)
        hidden_states = mask_index.restore(visible, fill)
        hidden_states = hidden_states + self.position_embeddings[:, : hidden_states.shape[1]]
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return self.prediction(hidden_states)


class EATForPreTraining(EATPreTrainedModel):
    """EAT pre-training: the student encoder, its decoder and (for the EAT objective) the EMA teacher.

    Call `update_teacher()` after each optimizer step. With `pretraining_objective="maskspec"` the same student is
    trained MaskSpec style instead: no teacher, a Transformer decoder, MSE on the hidden spectrogram patches.
    """

    _keys_to_ignore_on_load_unexpected = None
    _keep_in_fp32_modules_strict = ["teacher"]

    def __init__(self, config: EATConfig):
        super().__init__(config)
        self.eat = EATModel(config)
        self.mask_generator = EATMaskGenerator(config)
        if config.pretraining_objective == "eat":
            self.teacher = EATTeacher(config)
            self.decoder = EATCNNDecoder(config)
        else:
            self.teacher = None
            self.decoder = EATMaskSpecDecoder(config)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        # The teacher starts as a copy of the student. This runs after the student is initialised or loaded (children
        # first), and only when the checkpoint did not hold a teacher: a loaded one keeps its weights.
        if isinstance(module, EATTeacher):
            init.zeros_(module.num_updates)
            for teacher_param, student_param in zip(module.encoder.parameters(), self.eat.parameters()):
                init.copy_(teacher_param, student_param)

    def update_teacher(self) -> torch.Tensor | None:
        """Moves the EMA teacher towards the student; returns the decay used as a 0-dim tensor on the model's device
        (None for MaskSpec, which has none). Convert it with `float()` only when logging: that waits for the device."""
        return self.teacher.update(self.eat) if self.teacher is not None else None

    def eat_objective(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        student: EATModelOutput,
        mask_index: EATMaskIndex,
        generator: torch.Generator | None,
    ) -> dict[str, torch.Tensor]:
        """The Utterance-Frame Objective: the CNN decoder predicts the teacher's targets at the hidden patches, and
        the student's CLS their mean over the clip."""
        frame_targets, utterance_targets = self.teacher(input_values, attention_mask)
        decoder_input = self.decoder.decoder_input(student.last_hidden_state[:, 1:], mask_index, generator)
        predictions = self.decoder(decoder_input, input_values.shape[1] // self.config.patch_size)
        hidden_predictions = mask_index.hidden_of_rows(predictions)
        hidden_targets = mask_index.hidden_of_clips(frame_targets)
        loss, frame_loss, utterance_loss = utterance_frame_loss(
            hidden_predictions,
            hidden_targets,
            student.pooler_output,
            utterance_targets[mask_index.clip_of_row],
            self.config.utterance_loss_weight,
            self.config.utterance_loss_reduction,
        )
        return {
            "loss": loss,
            "frame_loss": frame_loss,
            "utterance_loss": utterance_loss,
            "logits": predictions,
            "target_std": mean_channel_std(hidden_targets),
            "prediction_std": mean_channel_std(hidden_predictions),
            "target_position_share": position_share(frame_targets),
        }

    def maskspec_objective(
        self, input_values: torch.Tensor, student: EATModelOutput, mask_index: EATMaskIndex
    ) -> dict[str, torch.Tensor]:
        """MaskSpec: the Transformer decoder reconstructs the hidden spectrogram patches (MSE)."""
        predictions = self.decoder(student.last_hidden_state, mask_index)
        patches = patchify(input_values, self.config.patch_size)
        hidden_targets = mask_index.hidden_of_clips(patches)
        if self.config.maskspec_norm_patch_loss:
            hidden_targets = F.layer_norm(hidden_targets, hidden_targets.shape[-1:], eps=1e-6)
        hidden_predictions = mask_index.hidden_of_rows(predictions)
        frame_loss = (hidden_predictions.float() - hidden_targets.float()).pow(2).mean()
        return {
            "loss": frame_loss,
            "frame_loss": frame_loss,
            "logits": predictions,
            "target_std": mean_channel_std(hidden_targets),
            "prediction_std": mean_channel_std(hidden_predictions),
            "target_position_share": position_share(patches),
        }

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> EATForPreTrainingOutput:
        r"""
        bool_masked_pos (`torch.BoolTensor` of shape `(batch_size * clones, num_patches)`, *optional*):
            The student's masks, True = hidden (the pre-training collator draws them). Drawn here when omitted. They
            must come from a mask generator configured like this model (`model.mask_generator` or
            `EATMaskGenerator(model.config)`): the model takes the visible count from its config, so that the step
            never reads it back from the device, and checks the masks against it. Masks with another count (another
            mask_ratio or mask_strategy) raise a `ValueError` on the CPU and fail a device-side assertion on an
            accelerator; to pre-train with another ratio, set it in the config.
        generator (`torch.Generator`, *optional*):
            Makes the drawn masks and the decoder's mask noise reproducible.

        Example:

        ```python
        >>> import torch
        >>> from modeling_eat import EATConfig, EATForPreTraining

        >>> model = EATForPreTraining(EATConfig.from_preset("tiny"))
        >>> spectrogram = torch.randn(2, 128, 128)  # (batch, frames, mel): from EATFeatureExtractor in practice
        >>> outputs = model(spectrogram, generator=torch.Generator().manual_seed(0))
        >>> outputs.loss.backward()
        >>> decay = model.update_teacher()  # after each optimizer step

        ```"""
        input_values = self.eat.check_input_values(input_values)
        num_clips, num_time_patches = input_values.shape[0], input_values.shape[1] // self.config.patch_size
        num_freq_patches = self.config.num_freq_patches
        if bool_masked_pos is None:
            bool_masked_pos = self.mask_generator(
                num_clips, num_time_patches, num_freq_patches, generator, input_values.device
            )
        mask_index = EATMaskIndex(
            bool_masked_pos, num_clips, self.mask_generator.num_visible(num_time_patches, num_freq_patches)
        )
        student = self.eat(
            input_values,
            attention_mask=attention_mask,
            bool_masked_pos=bool_masked_pos,
            num_visible_patches=mask_index.num_visible,
            **kwargs,
        )
        if self.config.pretraining_objective == "eat":
            objective = self.eat_objective(input_values, attention_mask, student, mask_index, generator)
        else:
            objective = self.maskspec_objective(input_values, student, mask_index)
        return EATForPreTrainingOutput(
            **objective,
            bool_masked_pos=bool_masked_pos,
            last_hidden_state=student.last_hidden_state,
            hidden_states=student.hidden_states,
            attentions=student.attentions,
        )


__all__ = [
    "EATCNNDecoder",
    "EATForAudioClassification",
    "EATForPreTraining",
    "EATMaskSpecDecoder",
    "EATModel",
    "EATPreTrainedModel",
    "EATTeacher",
    "ema_decay_schedule",
    "ema_schedule",
    "position_share",
    "sincos_position_table",
    "utterance_frame_loss",
]
