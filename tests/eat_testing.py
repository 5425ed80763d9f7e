"""Builders the test files share: tiny random-weight EATs and their inputs, and a fake of the Hub's API.

The `tiny` preset is 64 wide with 3 blocks of 4 heads; 128-frame clips make an 8 x 8 patch grid, so a forward pass
takes milliseconds.
"""

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile
import torch
from huggingface_hub.utils import httpx

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


def small_tester_config(**overrides) -> EATConfig:
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


class FakeHub:
    """Answers the Hub endpoints whoami, create_repo and upload_folder call, and records what reached them. A token
    starting with `hf_bad` is refused (401), one starting with `hf_read` may only read."""

    def __init__(self):
        self.requests = []
        self.authorizations = set()
        self.created = None
        self.uploaded = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        self.authorizations.add(request.headers.get("authorization"))
        path = request.url.path
        if path == "/api/whoami-v2":
            token = (request.headers.get("authorization") or "").removeprefix("Bearer ")
            if token.startswith("hf_bad"):
                return httpx.Response(401, json={"error": "Invalid credentials in Authorization header"})
            role = "read" if token.startswith("hf_read") else "write"
            return httpx.Response(200, json={"name": "test-user", "auth": {"accessToken": {"role": role}}})
        if path == "/api/repos/create":
            self.created = json.loads(request.content)
            repo_id = f"{self.created['organization']}/{self.created['name']}"
            return httpx.Response(200, json={"url": f"https://huggingface.co/{repo_id}"})
        if path == "/api/validate-yaml":
            return httpx.Response(200, json={})
        if path.endswith("/preupload/main"):
            files = json.loads(request.content)["files"]
            # "regular" makes the client inline every file in the commit, so the fake needs no LFS/Xet storage.
            modes = [{"path": file["path"], "uploadMode": "regular", "shouldIgnore": False} for file in files]
            return httpx.Response(200, json={"files": modes})
        if path.endswith("/commit/main"):
            for line in request.content.splitlines():
                operation = json.loads(line)
                if operation["key"] == "file":
                    self.uploaded[operation["value"]["path"]] = operation["value"]["content"]
            repo_id = path.removeprefix("/api/models/").removesuffix("/commit/main")
            commit_url = f"https://huggingface.co/{repo_id}/commit/0123abc"
            return httpx.Response(200, json={"commitUrl": commit_url, "commitOid": "0123abc"})
        return httpx.Response(404, json={"error": f"the fake Hub does not serve {path}"})


@contextlib.contextmanager
def read_only_folder(path: Path):
    """`path` as a folder this process cannot write to: read-only permissions, or for root (whom permissions do not
    stop) the immutable attribute (`chattr +i`); where neither holds, a path below a file, which cannot be created
    either. Yields the path to pass as an output folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    undo = None
    if os.geteuid() != 0:
        path.chmod(0o555)
        undo = lambda: path.chmod(0o755)  # noqa: E731
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(path)], check=True)  # noqa: E731
    try:
        probe = path / ".probe"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError:
            yield path
        else:
            blocker = path / "a-file"
            blocker.write_text("not a folder")
            yield blocker / "output"
    finally:
        if undo is not None:
            undo()


def save_tiny_ast(folder) -> Path:
    """A saved transformers `ASTModel` folder (random weights, a tiny config): a model folder that is not EAT."""
    from transformers import ASTConfig, ASTModel

    config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       max_length=128, num_mel_bins=128)
    torch.manual_seed(0)
    ASTModel(config).save_pretrained(folder)
    return Path(folder)


def refusal(main, arguments) -> str:
    """The one-line `error: ...` a command's `main` ends with (`modeling_eat.runtime.one_line_errors`)."""
    import pytest

    with pytest.raises(SystemExit) as error:
        main(arguments)
    message = str(error.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


TONE_CLASSES = {"low": 300.0, "mid": 1200.0, "high": 4000.0}


def write_tone_audiofolder(folder: Path, clips_per_class: dict[str, int], seed: int = 0) -> Path:
    """An audiofolder of `TONE_CLASSES` tones (0.3-0.6 s, random level and phase, a little noise): `split/*.wav` and
    `split/metadata.csv` for each split of `clips_per_class`."""
    rng = np.random.default_rng(seed)
    for split, count in clips_per_class.items():
        split_dir = Path(folder) / split
        split_dir.mkdir(parents=True, exist_ok=True)
        rows = ["file_name,label"]
        for label, frequency in TONE_CLASSES.items():
            for index in range(count):
                seconds = rng.uniform(0.3, 0.6)
                shift = rng.uniform(0, 1 / frequency)
                waveform = tone(frequency, 16000, seconds + shift, amplitude=rng.uniform(0.05, 0.5))
                waveform = waveform[int(shift * 16000):]
                waveform = waveform + 0.005 * rng.standard_normal(waveform.shape).astype(np.float32)
                write_wav(split_dir / f"{label}_{index}.wav", waveform.astype(np.float32), 16000)
                rows.append(f"{label}_{index}.wav,{label}")
        (split_dir / "metadata.csv").write_text("\n".join(rows) + "\n")
    return Path(folder)


def train_tiny_tone_classifier(folder: Path, data_dir: Path, steps: int = 40) -> EATForAudioClassification:
    """A `tiny` classifier fine-tuned (from random weights, full batch, Adam) on the train split of a
    `write_tone_audiofolder` set until it tells the tones apart, saved with its extractor to `folder`."""
    id2label = dict(enumerate(TONE_CLASSES))
    config = EATConfig.from_preset(
        "tiny", max_length=64, id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    torch.manual_seed(0)
    model = EATForAudioClassification(config)
    extractor = EATFeatureExtractor(max_length=64)
    waveforms, labels = [], []
    for path in sorted((Path(data_dir) / "train").glob("*.wav")):
        waveforms.append(soundfile.read(path, dtype="float32")[0])
        labels.append(config.label2id[path.stem.split("_")[0]])
    inputs = extractor(waveforms, sampling_rate=16000, return_tensors="pt")["input_values"]
    targets = torch.tensor(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs).logits, targets).backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return model
