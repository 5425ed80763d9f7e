"""The X-ARES encoder for EAT: `EATEncoder`, the module's one name ending in `Encoder` (as X-ARES's loader needs).

    # in a checkout of X-ARES (github.com/jimbozhang/xares), with modeling_eat installed
    EAT_MODEL_NAME_OR_PATH=path/to/eat-folder python -m xares.run modeling_eat/xares.py src/tasks/*.py

X-ARES turns the path `modeling_eat/xares.py` into the module name `modeling_eat.xares`, so the installed package is
what runs, from any folder. It constructs the encoder without arguments: the model is then `$EAT_MODEL_NAME_OR_PATH`,
else the official pre-trained EAT-Base. Other settings (`EATEmbedder`'s) take an encoder file of your own, e.g.

    from modeling_eat import xares

    class EATLastButOneEncoder(xares.EATEncoder):
        def __init__(self):
            super().__init__("path/to/eat-folder", timestamp_layer=-2)

`forward(audio [B, T]) -> [B, T', D]`: the timestamp embeddings of `modeling_eat.inference.embeddings` (one per
`hop_size_in_ms`, here the native patch row of 160 ms unless asked otherwise; output `t` starts at `t * hop_size_in_ms`
and spans 175 ms), for zero-padded batches of any length. X-ARES pools them over time itself for clip-level tasks.
Its own check feeds `torch.randn`: sounds whose peak exceeds 1 are divided by their peak (see
`limit_to_full_scale`).
"""

import torch

from .inference.embeddings import load_embedder


# X-ARES encodes whole data sets; a finer hop multiplies that cost (BENCHMARKS.md, "Evaluation harnesses").
XARES_HOP_MS = 160.0


class EATEncoder(torch.nn.Module):
    """An EAT encoder as X-ARES takes it: `sampling_rate`, `output_dim`, `hop_size_in_ms`, and `forward`."""

    def __init__(self, model_name_or_path: str | None = None, **settings):
        super().__init__()
        self.embedder = load_embedder(model_name_or_path, **{"timestamp_hop_ms": XARES_HOP_MS, **settings})
        self.sampling_rate = self.embedder.sample_rate
        self.output_dim = self.embedder.timestamp_embedding_size
        self.hop_size_in_ms = self.embedder.timestamp_hop_ms

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """`[B, T]` 16 kHz audio (zero-padded) -> float32 `[B, T', output_dim]` on the device of `audio`."""
        embeddings, _ = self.embedder.timestamp_embeddings(audio)
        return embeddings
