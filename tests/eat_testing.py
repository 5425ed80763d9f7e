"""Builders the test files share: tiny random-weight EATs and their inputs.

The `tiny` preset is 64 wide with 3 blocks of 4 heads; 128-frame clips make an 8 x 8 patch grid, so a forward pass
takes milliseconds.
"""

from pathlib import Path

import numpy as np
import soundfile
import torch

from modeling_eat import EATConfig, EATFeatureExtractor, EATForAudioClassification, EATForPreTraining


PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
NUM_FRAMES = 128
NUM_MEL_BINS = 128


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_config(**overrides) -> EATConfig:
    """The `tiny` preset with 2 clones per clip (16 would only make the tests slower)."""
    return EATConfig.from_preset("tiny", **{"clone_batch": 2, **overrides})


def build(model_class=EATForPreTraining, seed: int = 0, **overrides):
    """A `model_class` of `tiny_config(**overrides)`, its weights drawn from `seed`."""
    torch.manual_seed(seed)
    return model_class(tiny_config(**overrides))


def spectrogram(batch_size: int = 2, num_frames: int = NUM_FRAMES, seed: int = 0) -> torch.Tensor:
    """Random normalised fbank input `(batch_size, num_frames, 128)`."""
    return torch.randn(batch_size, num_frames, NUM_MEL_BINS, generator=seeded(seed))


def tone(frequency: float, sampling_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    time = np.arange(int(sampling_rate * seconds)) / sampling_rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def write_wav(path: Path, waveform: np.ndarray, sampling_rate: int) -> dict:
    """Writes a float WAV; returns it as an `Audio(decode=False)` value."""
    soundfile.write(path, waveform, sampling_rate, subtype="FLOAT")
    return {"bytes": None, "path": str(path)}


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max())


def save_tiny_classifier(folder, max_length: int, id2label: dict, model_class=EATForAudioClassification, **overrides):
    """A `tiny` classifier (or other `model_class`) and its feature extractor saved to `folder`, weights from seed 0;
    a classifier's head is scaled up so that the labels' scores differ clearly. Returns the model."""
    config = EATConfig.from_preset(
        "tiny", max_length=max_length, id2label=id2label, label2id={v: k for k, v in id2label.items()}, **overrides
    )
    torch.manual_seed(0)
    model = model_class(config).eval()
    if hasattr(model, "classifier"):
        with torch.no_grad():
            model.classifier.weight.mul_(50)
    model.save_pretrained(folder)
    EATFeatureExtractor(max_length=max_length).save_pretrained(folder)
    return model

