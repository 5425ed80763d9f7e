"""The official checkpoint layouts (their names: `modeling_eat.loading_eat`): where one encoder's weights live in a
source state dict, and the renaming rules from those names to this package's."""

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..loading_eat import (
    FAIRSEQ_FINETUNED_ENCODER_PREFIX,
    FAIRSEQ_PRETRAINING_ENCODER_PREFIX,
    HUB_PORT_EMBEDDING_NORM,
    HUB_PORT_PREFIX,
    OFFICIAL_BLOCK_PARAMETERS,
    OFFICIAL_EMBEDDING_PARAMETERS,
    OFFICIAL_HEAD_PARAMETERS,
)


# fairseq keeps the teacher as a nested dict; flattened under this prefix so every weight has one flat name.
EMA_PREFIX = "_ema."


@dataclass(frozen=True)
class SourceLayout:
    """Where one encoder's weights live in a source state dict."""

    description: str
    encoder_prefix: str
    blocks_prefix: str
    context_norm: str
    head_prefix: str | None = None

    @property
    def positions_key(self) -> str:
        return f"{self.encoder_prefix}fixed_positional_encoder.positions"

    @property
    def decoder_prefix(self) -> str:
        return f"{self.encoder_prefix}decoder."

    def teacher(self) -> "SourceLayout":
        return SourceLayout(
            f"{self.description} (EMA teacher)",
            EMA_PREFIX + self.encoder_prefix,
            EMA_PREFIX + self.blocks_prefix,
            self.context_norm,
        )


FAIRSEQ_PRETRAINING = SourceLayout(
    "fairseq pre-training checkpoint", FAIRSEQ_PRETRAINING_ENCODER_PREFIX, "blocks.", "context_encoder.norm"
)
FAIRSEQ_FINETUNED = SourceLayout(
    "fairseq fine-tuned checkpoint", FAIRSEQ_FINETUNED_ENCODER_PREFIX, "model.blocks.", "context_encoder.norm", ""
)
HUB_PORT = SourceLayout(
    "hub remote-code port folder", HUB_PORT_PREFIX, f"{HUB_PORT_PREFIX}blocks.", HUB_PORT_EMBEDDING_NORM,
    HUB_PORT_PREFIX,
)


def encoder_rules(layout: SourceLayout, target_prefix: str) -> list[tuple[re.Pattern, str]]:
    """Renaming rules from one official encoder to an `EATModel` whose weights start with `target_prefix`."""
    encoder, blocks = re.escape(layout.encoder_prefix), re.escape(layout.blocks_prefix)
    embeddings = {**OFFICIAL_EMBEDDING_PARAMETERS, layout.context_norm: "embeddings.layer_norm"}
    # `extra_tokens` is a bare parameter; the others are modules with a weight and a bias.
    rules = [
        (rf"{encoder}{re.escape(official)}((?:\.weight|\.bias)?)", ours + "{0}")
        for official, ours in embeddings.items()
    ]
    for official, ours in OFFICIAL_BLOCK_PARAMETERS.items():
        rules.append((rf"{blocks}(\d+)\.{re.escape(official)}\.(weight|bias)", f"layers.{{0}}.{ours}.{{1}}"))
    return [(re.compile(pattern), target_prefix + template) for pattern, template in rules]


def decoder_rules(layout: SourceLayout) -> list[tuple[re.Pattern, str]]:
    decoder = re.escape(layout.decoder_prefix)
    return [
        # In each official decoder block, index 0 is the convolution; its LayerNorm has no parameters.
        (re.compile(rf"{decoder}blocks\.(\d+)\.0\.(weight|bias)"), "decoder.layers.{0}.conv.{1}"),
        (re.compile(rf"{decoder}proj\.(weight|bias)"), "decoder.projection.{0}"),
    ]


def head_rules(layout: SourceLayout) -> list[tuple[re.Pattern, str]]:
    head = re.escape(layout.head_prefix)
    return [
        (re.compile(rf"{head}{re.escape(official)}\.(weight|bias)"), ours + ".{0}")
        for official, ours in OFFICIAL_HEAD_PARAMETERS.items()
    ]


@dataclass
class SourceCheckpoint:
    """A checkpoint read into memory: flat state dict (teacher under `_ema.`), its layout and configuration."""

    path: Path
    layout: SourceLayout
    state_dict: dict[str, torch.Tensor]
    fairseq_cfg: dict | None = None
    hub_config: dict | None = None
    num_updates: int | None = None
    num_updates_origin: str = ""

    @property
    def has_teacher(self) -> bool:
        return any(key.startswith(EMA_PREFIX) for key in self.state_dict)

    @property
    def has_decoder(self) -> bool:
        return any(key.startswith(self.layout.decoder_prefix) for key in self.state_dict)

    @property
    def has_head(self) -> bool:
        return self.layout.head_prefix is not None and f"{self.layout.head_prefix}head.weight" in self.state_dict


__all__ = [
    "EMA_PREFIX",
    "FAIRSEQ_FINETUNED",
    "FAIRSEQ_PRETRAINING",
    "HUB_PORT",
    "SourceCheckpoint",
    "SourceLayout",
    "decoder_rules",
    "encoder_rules",
    "head_rules",
]
