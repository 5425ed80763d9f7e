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
SAMPLING_RATE = 16000
NUM_FRAMES = 128
NUM_MEL_BINS = 128
NUM_TIME_PATCHES = NUM_FRAMES // 16
NUM_PATCHES = NUM_TIME_PATCHES * 8
# The tiny classifiers of the pipeline, export and remote-code tests: a 64-frame window (0.64 s, 4 patch rows).
CLASSIFIER_FRAMES = 64
SOUND_LABELS = {0: "bark", 1: "rain", 2: "siren", 3: "speech"}
HEAD_KEYS = {"fc_norm.weight", "fc_norm.bias", "classifier.weight", "classifier.bias"}
# What a faithful float32 port meets on the reference fixtures (../shared/fixtures/README.md).
FIXTURE_TOLERANCE = 1e-4


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_config(**overrides) -> EATConfig:
    """The `tiny` preset with 2 clones per clip (16 would only make the tests slower)."""
    return EATConfig.from_preset("tiny", **{"clone_batch": 2, **overrides})


def tester_config(**overrides) -> EATConfig:
    """The sizes transformers' own model testers use (2 layers, 32 wide, 4 heads, an intermediate size that is no
    multiple of anything) on 32-frame inputs with 3 labels; every other field at its default unless overridden."""
    settings = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_length=32,
                    num_labels=3)
    return EATConfig(**{**settings, **overrides})


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

