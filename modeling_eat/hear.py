"""The HEAR 2021 API (hearbenchmark.com/hear-api.html) for EAT: `import modeling_eat.hear` is the module HEAR's tools
take (`heareval`'s embedding runner, the validator).

    python -m heareval.embeddings.runner modeling_eat.hear --tasks-dir TASKS        # the official EAT-Base
    python -m heareval.embeddings.runner modeling_eat.hear --model path/to/eat-folder --tasks-dir TASKS \\
        --model-options '{"timestamp_hop_ms": 160}'

(heareval's `--model` must be an existing path; a Hub id goes in `$EAT_MODEL_NAME_OR_PATH`.)

- `load_model(model_file_path="", **settings)`: any EAT folder or Hub id (the official hub-port checkpoints
  included); with no path, `$EAT_MODEL_NAME_OR_PATH` or else the official pre-trained EAT-Base. `settings` (the
  runner's `--model-options`) are those of `EATEmbedder`: `scene_layer`, `scene_pooling`, `timestamp_layer`,
  `timestamp_hop_ms`, `batch_size`, `window_seconds`, and `device`, `dtype`, `feature_extractor_name`.
- `get_scene_embeddings(audio, model)`: float32 `[n_sounds, model.scene_embedding_size]`.
- `get_timestamp_embeddings(audio, model)`: float32 `[n_sounds, n_timestamps, model.timestamp_embedding_size]`
  and the timestamps `[n_sounds, n_timestamps]` in milliseconds, the centres of the embeddings' spans, every
  `timestamp_hop_ms` (40 ms by default), none past the end of the audio.

`audio` is float32 `[n_sounds, n_samples]` at `model.sample_rate` (16 kHz), of any length. What the settings are, why
these defaults, and what each costs: `modeling_eat.inference.embeddings` and BENCHMARKS.md ("Evaluation harnesses").
"""

import torch

from .inference.embeddings import EATEmbedder, load_embedder


def load_model(model_file_path: str = "", **settings) -> EATEmbedder:
    """The EAT model at `model_file_path` (a folder or Hub id; empty: `$EAT_MODEL_NAME_OR_PATH`, else the official
    pre-trained EAT-Base), in eval mode, as the `torch.nn.Module` HEAR's functions take."""
    return load_embedder(model_file_path or None, **settings)


def get_scene_embeddings(audio: torch.Tensor, model: EATEmbedder) -> torch.Tensor:
    """One embedding per sound: float32 `[n_sounds, model.scene_embedding_size]`."""
    return model.scene_embeddings(audio)


def get_timestamp_embeddings(audio: torch.Tensor, model: EATEmbedder) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings at regular intervals and their centres in milliseconds: (float32 `[n_sounds, n_timestamps,
    model.timestamp_embedding_size]`, float32 `[n_sounds, n_timestamps]`)."""
    return model.timestamp_embeddings(audio)


__all__ = ["get_scene_embeddings", "get_timestamp_embeddings", "load_model"]
