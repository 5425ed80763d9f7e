"""The modules that are exported: an EAT model on spectrograms, or the whole path from the waveform.

`SpectrogramGraph` takes `input_values (batch, frames, mel)` with `frames` any multiple of the patch size up to the
positional table. `WaveformGraph` takes `waveform (batch, samples)` at the feature extractor's rate and runs what
`EATFeatureExtractor` and the model do: Kaldi fbank (`exportable_kaldi_fbank`), padding to `max_length` frames (or
to the next patch row, for clips longer than that: nothing is cropped), normalisation, model. A clip up to the
extractor's `max_length` therefore gets exactly the input `pipeline("audio-classification")` gives the model.

Both return the classifier's `logits`, or the encoder's `last_hidden_state` and `pooler_output`.
"""

import torch
from torch import nn

from ..feature_extraction_eat import (
    FRAME_LENGTH_MS,
    FRAME_SHIFT_MS,
    EATFeatureExtractor,
    _frame_sizes,
    exportable_fbank_constants,
    exportable_kaldi_fbank,
    kaldi_num_frames,
    patch_aligned,
    scale_to_rms,
)


def output_names(model) -> list[str]:
    return ["logits"] if hasattr(model, "classifier") else ["last_hidden_state", "pooler_output"]


def _model_outputs(model, input_values: torch.Tensor):
    outputs = model(input_values)
    if hasattr(model, "classifier"):
        return outputs.logits
    return outputs.last_hidden_state, outputs.pooler_output


class SpectrogramGraph(nn.Module):
    """`input_values` → the model's outputs (see `output_names`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor):
        return _model_outputs(self.model, input_values)


class WaveformGraph(nn.Module):
    """`waveform` (float32 in [-1, 1]) → Kaldi fbank → pad → normalise → the model's outputs."""

    def __init__(self, model, feature_extractor: EATFeatureExtractor):
        super().__init__()
        self.model = model
        sampling_rate = feature_extractor.sampling_rate
        constants = exportable_fbank_constants(sampling_rate, feature_extractor.num_mel_bins)
        for name, value in constants.items():
            self.register_buffer(name, value, persistent=False)
        self.frame_shift = _frame_sizes(sampling_rate, FRAME_LENGTH_MS, FRAME_SHIFT_MS)[1]
        self.patch_size = model.config.patch_size
        # EATFeatureExtractor pads to `max_length` frames, a whole number of rows for any model it serves.
        self.min_rows = -(-int(feature_extractor.max_length) // self.patch_size)
        padding, scale = float(feature_extractor.padding_value), 1.0
        self.shift = 0.0
        if feature_extractor.do_normalize:
            self.shift, scale = float(feature_extractor.mean), 2.0 * float(feature_extractor.std)
        self.padding_value, self.scale = padding, scale
        self.waveform_rms = feature_extractor.waveform_rms

    def input_values(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.waveform_rms is not None:
            waveform = scale_to_rms(waveform, self.waveform_rms)
        fbank = exportable_kaldi_fbank(waveform, self.window, self.dft_matrix, self.mel_matrix, self.frame_shift)
        num_frames = fbank.shape[1]
        rows = (num_frames + self.patch_size - 1) // self.patch_size
        # Rows first, then frames: the exporter can then tell that the length is a whole number of patch rows.
        target = torch.sym_max(self.min_rows, rows) * self.patch_size
        fbank = nn.functional.pad(fbank, (0, 0, 0, target - num_frames), value=self.padding_value)
        return (fbank - self.shift) / self.scale

    def forward(self, waveform: torch.Tensor):
        return _model_outputs(self.model, self.input_values(waveform))


def eager_outputs(model, feature_extractor: EATFeatureExtractor | None, inputs: torch.Tensor):
    """What the exported graph must reproduce, computed the ordinary way: for a waveform, `EATFeatureExtractor`
    (with `kaldi_fbank`) at the length the graph pads to, then the model."""
    if feature_extractor is not None:
        patch_size = model.config.patch_size
        num_frames = kaldi_num_frames(inputs.shape[-1], feature_extractor.sampling_rate)
        max_length = max(int(feature_extractor.max_length), patch_aligned(num_frames, patch_size, round_up=True))
        inputs = feature_extractor(
            list(inputs), sampling_rate=feature_extractor.sampling_rate, max_length=max_length, return_tensors="pt"
        )["input_values"]
    with torch.no_grad():
        return _model_outputs(model, inputs)


__all__ = ["SpectrogramGraph", "WaveformGraph", "eager_outputs", "output_names"]
