"""A small built-in labelled audio set, generated on the fly.

The README quickstart has to run on a fresh machine with no network, so it cannot download a data set. Instead it
writes this one: seven families of synthetic one-second sounds whose identity lives in their spectro-temporal
structure (a steady pitch, a sweep, a modulation rate, a click period, a noise band), which is the kind of thing an
audio SSL model should pick up. Every clip draws its own parameters (frequency, timing, gain, background noise), so
a classifier has to learn the family rather than memorise a template, while a tiny model still gets well above
chance within a few minutes on a CPU.

The output is a standard ``audiofolder`` (``train/`` and ``test/``, each with WAV files and a ``metadata.csv`` of
``file_name,label``), the same layout as the FSDD copy under ``shared/data/fsdd``, so it loads with
``datasets.load_dataset("audiofolder", data_dir=...)`` and goes through exactly the code path a real data set does.

Usage::

    python -m modeling_eat.synthetic_audio OUTPUT_DIR [--num_train_per_class N] [--num_test_per_class N] [--seed S]

Demo data of the quickstart (and of the SSL study's optional synthetic rows): it needs only numpy and soundfile
(``datasets`` is needed only to load the result).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


SYNTHETIC_LABELS: tuple[str, ...] = (
    "tone",
    "chirp",
    "noise_burst",
    "clicks",
    "am_tone",
    "fm_tone",
    "harmonic_stack",
)

# Bump whenever a change here alters the audio produced for a given seed: the manifest records it, so a folder
# written by an older generator is reported as different instead of being silently reused.
GENERATOR_VERSION = 1

MANIFEST_NAME = "synthetic_audio.json"
SPLITS = ("train", "test")
DEFAULT_NUM_TRAIN_PER_CLASS = 100
DEFAULT_NUM_TEST_PER_CLASS = 20

MIN_SAMPLING_RATE = 8000
MIN_DURATION_SECONDS = 0.25

RandomState = np.random.Generator | int | None


# --------------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    # Pitch and rate ranges span more than an octave; sampling them on a log scale keeps low and high values
    # equally common, as they are perceptually.
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _fade_envelope(num_samples: int, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    # Raised-cosine ramps keep a sustained sound from starting or ending with a step, which would add a broadband
    # click and blur the line between the tonal classes and `clicks`.
    envelope = np.ones(num_samples)
    ramp = min(int(rng.uniform(0.005, 0.03) * sampling_rate), num_samples // 4)
    if ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        envelope[:ramp] = rise
        envelope[num_samples - ramp:] = rise[::-1]
    return envelope


def _band_limited_noise(
    num_samples: int, sampling_rate: int, low_hz: float, high_hz: float, rng: np.random.Generator
) -> np.ndarray:
    # Brick-wall masking in the frequency domain is exact and needs no filter-design dependency.
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sampling_rate)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    noise = np.fft.irfft(spectrum, n=num_samples)
    return noise / (np.std(noise) + 1e-12)


def _coloured_noise(num_samples: int, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    # Background noise with a random spectral tilt, anywhere from white to pink, so the floor itself carries no
    # class information and the model cannot rely on one fixed noise colour.
    alpha = rng.uniform(0.0, 1.0)
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sampling_rate)
    spectrum *= np.maximum(freqs, 20.0) ** (-alpha / 2.0)
    noise = np.fft.irfft(spectrum, n=num_samples)
    return noise / (np.std(noise) + 1e-12)


def _place_event(
    rng: np.random.Generator,
    num_samples: int,
    sampling_rate: int,
    min_fraction: float,
    max_fraction: float,
) -> tuple[int, int]:
    # A random length and a random onset: otherwise every clip of a class would start at 0 and "where does the
    # energy start" would become a shortcut feature.
    length = int(rng.uniform(min_fraction, max_fraction) * num_samples)
    length = max(min(length, num_samples), int(0.05 * sampling_rate))
    onset = int(rng.integers(0, num_samples - length + 1))
    return onset, length


# --------------------------------------------------------------------------------------------------------------
# The sound families. Each returns the dry event (peak-normalised, before background and gain) and its parameters.
# --------------------------------------------------------------------------------------------------------------

EventInfo = dict[str, Any]


def _tone(rng: np.random.Generator, num_samples: int, sr: int) -> tuple[np.ndarray, EventInfo]:
    onset, length = _place_event(rng, num_samples, sr, 0.4, 0.95)
    nyquist_guard = 0.45 * sr
    frequency = _log_uniform(rng, 200.0, min(4000.0, nyquist_guard))
    t = np.arange(length) / sr
    event = np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
    # Half the tones get one or two faint overtones, so "tone" is not only the purest possible spectrum, yet the
    # fundamental stays dominant (>= 16 dB above any overtone) which keeps it apart from `harmonic_stack`.
    harmonics = []
    if rng.random() < 0.5:
        for k in range(2, 2 + int(rng.integers(1, 3))):
            if k * frequency >= nyquist_guard:
                break
            amplitude = rng.uniform(0.03, 0.15)
            harmonics.append((k, amplitude))
            event += amplitude * np.sin(2 * np.pi * k * frequency * t + rng.uniform(0, 2 * np.pi))
    event *= _fade_envelope(length, sr, rng)
    return _embed(event, onset, num_samples), {
        "onset": onset, "length": length, "frequency": frequency, "harmonics": harmonics,
    }


def _chirp(rng: np.random.Generator, num_samples: int, sr: int) -> tuple[np.ndarray, EventInfo]:
    onset, length = _place_event(rng, num_samples, sr, 0.3, 0.95)
    low_bound, high_bound = 150.0, min(6000.0, 0.45 * sr)
    # At least a factor of two between the ends, so every sweep is clearly audible as a sweep and not a wobbly tone.
    ratio = _log_uniform(rng, 2.0, min(16.0, high_bound / low_bound))
    low = _log_uniform(rng, low_bound, high_bound / ratio)
    high = low * ratio
    upward = bool(rng.random() < 0.5)
    start_hz, end_hz = (low, high) if upward else (high, low)
    shape = "log" if rng.random() < 0.5 else "linear"
    duration = length / sr
    t = np.arange(length) / sr
    if shape == "linear":
        phase = 2 * np.pi * (start_hz * t + 0.5 * (end_hz - start_hz) / duration * t**2)
    else:
        rate = np.log(end_hz / start_hz) / duration
        phase = 2 * np.pi * start_hz * (np.exp(rate * t) - 1.0) / rate
    event = np.sin(phase + rng.uniform(0, 2 * np.pi)) * _fade_envelope(length, sr, rng)
    return _embed(event, onset, num_samples), {
        "onset": onset, "length": length, "start_hz": start_hz, "end_hz": end_hz, "shape": shape,
    }


def _noise_burst(rng: np.random.Generator, num_samples: int, sr: int) -> tuple[np.ndarray, EventInfo]:
    onset, length = _place_event(rng, num_samples, sr, 0.1, 0.4)
    nyquist = sr / 2
    if rng.random() < 0.3:
        low_hz, high_hz = 50.0, nyquist
    else:
        # At least an octave wide and 500 Hz wide: narrower bands start to sound (and look) like a rough tone.
        low_hz = _log_uniform(rng, 100.0, nyquist / 4)
        high_hz = min(nyquist, max(low_hz * _log_uniform(rng, 2.0, 16.0), low_hz + 500.0))
    noise = _band_limited_noise(length, sr, low_hz, high_hz, rng)
    t = np.linspace(0.0, 1.0, length)
    shape = "percussive" if rng.random() < 0.5 else "swell"
    if shape == "percussive":
        attack = max(int(rng.uniform(0.002, 0.02) * sr), 1)
        envelope = np.exp(-t * rng.uniform(3.0, 8.0))
        envelope[:attack] *= np.linspace(0.0, 1.0, attack)
    else:
        envelope = np.sin(np.pi * t) ** rng.uniform(0.5, 2.0)
    event = noise * envelope
    return _embed(event, onset, num_samples), {
        "onset": onset, "length": length, "low_hz": low_hz, "high_hz": high_hz, "shape": shape,
    }


def _clicks(rng: np.random.Generator, num_samples: int, sr: int) -> tuple[np.ndarray, EventInfo]:
    onset, length = _place_event(rng, num_samples, sr, 0.5, 0.95)
    # At least three clicks in every train, so a period is always there to be heard.
    min_rate = max(5.0, 3.0 * sr / length)
    rate = _log_uniform(rng, min_rate, max(min_rate, 40.0))
    period = sr / rate
    num_clicks = int((length - 1) / period) + 1
    # Each click is a short damped resonance (a "tick" rather than a single-sample spike) with a random colour.
    resonance_hz = _log_uniform(rng, 800.0, min(6000.0, 0.4 * sr))
    decay_s = rng.uniform(0.0003, 0.002)
    click_len = int(8 * decay_s * sr) + 1
    tc = np.arange(click_len) / sr
    click = np.exp(-tc / decay_s) * np.sin(2 * np.pi * resonance_hz * tc + 0.5 * np.pi)
    event = np.zeros(length)
    positions = [int(round(i * period)) for i in range(num_clicks)]
    for position in positions:
        # A little level jitter keeps the train natural while the timing stays exactly periodic.
        amplitude = rng.uniform(0.8, 1.0)
        end = min(position + click_len, length)
        event[position:end] += amplitude * click[: end - position]
    return _embed(event, onset, num_samples), {
        "onset": onset, "length": length, "rate": rate, "click_positions": [onset + p for p in positions],
    }


def _am_tone(rng: np.random.Generator, num_samples: int, sr: int) -> tuple[np.ndarray, EventInfo]:
    onset, length = _place_event(rng, num_samples, sr, 0.5, 0.95)
    carrier_hz = _log_uniform(rng, 200.0, min(4000.0, 0.45 * sr))
    modulation_hz = _log_uniform(rng, 4.0, 20.0)
    # Depth from half to full: shallower modulation would be hard to tell from a plain tone under the fades.
    depth = rng.uniform(0.5, 1.0)
    t = np.arange(length) / sr
    modulator = (1.0 + depth * np.sin(2 * np.pi * modulation_hz * t + rng.uniform(0, 2 * np.pi))) / (1.0 + depth)
    event = modulator * np.sin(2 * np.pi * carrier_hz * t + rng.uniform(0, 2 * np.pi))
    event *= _fade_envelope(length, sr, rng)
    return _embed(event, onset, num_samples), {
        "onset": onset, "length": length, "carrier_hz": carrier_hz, "modulation_hz": modulation_hz, "depth": depth,
    }


def _fm_tone(rng: np.random.Generator, num_samples: int, sr: int) -> tuple[np.ndarray, EventInfo]:
    onset, length = _place_event(rng, num_samples, sr, 0.5, 0.95)
    # The upper bound leaves room for the widest excursion (1.3 x carrier) below Nyquist at any sampling rate.
    carrier_hz = _log_uniform(rng, 300.0, min(3500.0, 0.45 * sr / 1.3))
    modulation_hz = _log_uniform(rng, 3.0, 15.0)
    # Vibrato from a few percent up to a third of the carrier: always wider than the ~30 Hz bin of a typical
    # spectrogram frame, so the wobble is visible, but never so wide that the frequency approaches zero.
    deviation_hz = carrier_hz * rng.uniform(0.04, 0.3)
    t = np.arange(length) / sr
    modulation_phase = rng.uniform(0, 2 * np.pi)
    # Phase is the integral of carrier + deviation * sin(2 pi f_m t + phi).
    phase = 2 * np.pi * carrier_hz * t - (deviation_hz / modulation_hz) * (
        np.cos(2 * np.pi * modulation_hz * t + modulation_phase) - np.cos(modulation_phase)
    )
    event = np.sin(phase + rng.uniform(0, 2 * np.pi)) * _fade_envelope(length, sr, rng)
    return _embed(event, onset, num_samples), {
        "onset": onset, "length": length, "carrier_hz": carrier_hz, "modulation_hz": modulation_hz,
        "deviation_hz": deviation_hz,
    }


def _harmonic_stack(rng: np.random.Generator, num_samples: int, sr: int) -> tuple[np.ndarray, EventInfo]:
    onset, length = _place_event(rng, num_samples, sr, 0.4, 0.95)
    fundamental_hz = _log_uniform(rng, 80.0, 400.0)
    top_hz = min(7000.0, 0.45 * sr)
    # Between 4 and 20 partials: even the sparsest stack has three times as many strong peaks as a `tone` can.
    max_partials = int(top_hz // fundamental_hz)
    num_partials = int(rng.integers(min(4, max_partials), min(20, max_partials) + 1))
    tilt = rng.uniform(0.3, 1.2)
    t = np.arange(length) / sr
    event = np.zeros(length)
    amplitudes = []
    for k in range(1, num_partials + 1):
        amplitude = k ** (-tilt) * 10 ** (rng.uniform(-3.0, 3.0) / 20)
        amplitudes.append(amplitude)
        event += amplitude * np.sin(2 * np.pi * k * fundamental_hz * t + rng.uniform(0, 2 * np.pi))
    event *= _fade_envelope(length, sr, rng)
    return _embed(event, onset, num_samples), {
        "onset": onset, "length": length, "fundamental_hz": fundamental_hz, "amplitudes": amplitudes,
    }


def _embed(event: np.ndarray, onset: int, num_samples: int) -> np.ndarray:
    clip = np.zeros(num_samples)
    clip[onset:onset + len(event)] = event
    peak = np.max(np.abs(clip))
    return clip / peak if peak > 0 else clip


_FAMILIES: dict[str, Callable[[np.random.Generator, int, int], tuple[np.ndarray, EventInfo]]] = {
    "tone": _tone,
    "chirp": _chirp,
    "noise_burst": _noise_burst,
    "clicks": _clicks,
    "am_tone": _am_tone,
    "fm_tone": _fm_tone,
    "harmonic_stack": _harmonic_stack,
}
assert tuple(_FAMILIES) == SYNTHETIC_LABELS


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


def _check_format(sampling_rate: int, duration_seconds: float) -> int:
    if int(sampling_rate) != sampling_rate or sampling_rate < MIN_SAMPLING_RATE:
        raise ValueError(f"sampling_rate must be an integer >= {MIN_SAMPLING_RATE} Hz, got {sampling_rate!r}")
    if not duration_seconds >= MIN_DURATION_SECONDS:
        raise ValueError(f"duration_seconds must be >= {MIN_DURATION_SECONDS}, got {duration_seconds!r}")
    return int(round(duration_seconds * sampling_rate))


def synthesize_clip(
    label: str,
    rng: RandomState,
    sampling_rate: int = 16000,
    duration_seconds: float = 1.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Like :func:`generate_clip`, but also return the parameters drawn for the clip.

    The parameters (``onset`` and ``length`` of the event in samples, its frequencies, rates, ``gain_db`` and
    ``noise_rms``) are what tests and data inspection need to check a clip against what it was meant to be.
    """
    if label not in _FAMILIES:
        raise ValueError(f"unknown label {label!r}; expected one of {', '.join(SYNTHETIC_LABELS)}")
    num_samples = _check_format(sampling_rate, duration_seconds)
    rng = np.random.default_rng(rng)
    sampling_rate = int(sampling_rate)

    event, info = _FAMILIES[label](rng, num_samples, sampling_rate)
    # The floor sits 30-50 dB below the event's peak: enough to make silence non-digital, too little to mask it.
    noise_rms = 10 ** (-rng.uniform(30.0, 50.0) / 20)
    clip = event + noise_rms * _coloured_noise(num_samples, sampling_rate, rng)
    # A random overall level, so loudness carries no class information; the peak stays below full scale, so
    # 16-bit writing never clips.
    gain_db = rng.uniform(-24.0, -1.0)
    clip *= 10 ** (gain_db / 20) / np.max(np.abs(clip))
    info.update(label=label, noise_rms=noise_rms, gain_db=gain_db)
    return np.clip(clip, -1.0, 1.0).astype(np.float32), info


def generate_clip(
    label: str,
    rng: RandomState,
    sampling_rate: int = 16000,
    duration_seconds: float = 1.0,
) -> np.ndarray:
    """One mono clip of the sound family ``label`` (one of :data:`SYNTHETIC_LABELS`).

    ``rng`` is a :class:`numpy.random.Generator` (or a seed for one); the clip depends only on its state, the label
    and the format, so the same seed always gives the same clip. Returns ``float32`` samples in [-1, 1], of length
    ``round(duration_seconds * sampling_rate)``.
    """
    return synthesize_clip(label, rng, sampling_rate, duration_seconds)[0]


def _clip_rng(seed: int, split: str, label: str, index: int) -> np.random.Generator:
    # One independent stream per clip, keyed by (split, label, index) rather than drawn sequentially: a clip then
    # does not change when the number of clips or the set of labels changes, and train and test never share one.
    # crc32 rather than hash(), which is salted per process.
    key = (zlib.crc32(split.encode()), zlib.crc32(label.encode()), index)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _manifest(
    num_train_per_class: int, num_test_per_class: int, seed: int, sampling_rate: int, duration_seconds: float
) -> dict[str, Any]:
    return {
        "generator": "modeling_eat.synthetic_audio",
        "generator_version": GENERATOR_VERSION,
        "labels": list(SYNTHETIC_LABELS),
        "num_train_per_class": num_train_per_class,
        "num_test_per_class": num_test_per_class,
        "seed": seed,
        "sampling_rate": sampling_rate,
        "duration_seconds": duration_seconds,
    }


def _file_names(label: str, count: int) -> list:
    return [f"{label}_{index:04d}.wav" for index in range(count)]


def _is_complete(output_dir: Path, manifest: dict[str, Any]) -> bool:
    counts = {"train": manifest["num_train_per_class"], "test": manifest["num_test_per_class"]}
    for split in SPLITS:
        split_dir = output_dir / split
        expected = {name for label in SYNTHETIC_LABELS for name in _file_names(label, counts[split])}
        metadata = split_dir / "metadata.csv"
        if not metadata.is_file():
            return False
        with metadata.open(newline="") as handle:
            listed = {row["file_name"] for row in csv.DictReader(handle)}
        if listed != expected or not all((split_dir / name).is_file() for name in expected):
            return False
    return True


def _existing_set(output_dir: Path, manifest: dict[str, Any]) -> Path | None:
    """``output_dir`` if it already holds this exact set, None if it is absent or empty; raise otherwise."""
    if not output_dir.exists():
        return None
    if not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a directory; choose another output_dir")
    if not any(output_dir.iterdir()):
        return None
    manifest_path = output_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileExistsError(
            f"{output_dir} already exists and is not a synthetic audio set written by this module (no "
            f"{MANIFEST_NAME}); refusing to write into it. Choose an empty or new output_dir."
        )
    try:
        found = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise FileExistsError(
            f"{manifest_path} cannot be read ({error}); delete {output_dir} to regenerate"
        ) from error
    if not isinstance(found, dict):
        raise FileExistsError(f"{manifest_path} is not a synthetic audio manifest; delete {output_dir} to regenerate")
    if found != manifest:
        differences = ", ".join(
            f"{key}: {found.get(key)!r} there, {manifest.get(key)!r} requested"
            for key in sorted(set(manifest) | set(found))
            if found.get(key) != manifest.get(key)
        )
        raise FileExistsError(
            f"{output_dir} holds a synthetic audio set made with other parameters ({differences}); refusing to "
            f"overwrite it. Delete it or choose another output_dir."
        )
    if not _is_complete(output_dir, manifest):
        raise FileExistsError(
            f"{output_dir} holds an incomplete synthetic audio set (files were removed or changed); delete it to "
            f"regenerate."
        )
    return output_dir


def write_audiofolder(
    output_dir: str | os.PathLike,
    num_train_per_class: int = DEFAULT_NUM_TRAIN_PER_CLASS,
    num_test_per_class: int = DEFAULT_NUM_TEST_PER_CLASS,
    seed: int = 0,
    sampling_rate: int = 16000,
    duration_seconds: float = 1.0,
) -> Path:
    """Write the synthetic set as an ``audiofolder`` and return its path.

    Layout: ``output_dir/{train,test}/<label>_<index>.wav`` (mono 16-bit PCM) with a ``metadata.csv``
    (``file_name,label``) in each split, plus ``output_dir/synthetic_audio.json`` recording the parameters.

    If ``output_dir`` already holds a complete set written with the same parameters it is reused as is. If it holds
    anything else (other files, or a set with different parameters) a :class:`FileExistsError` is raised: this
    function never deletes or overwrites files it did not just write.
    """
    import soundfile as sf  # deferred so that importing the package does not need libsndfile

    for name, value in (("num_train_per_class", num_train_per_class), ("num_test_per_class", num_test_per_class)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    _check_format(sampling_rate, duration_seconds)
    manifest = _manifest(
        int(num_train_per_class), int(num_test_per_class), int(seed), int(sampling_rate), float(duration_seconds)
    )
    output_dir = Path(output_dir).expanduser().absolute()
    if _existing_set(output_dir, manifest) is not None:
        return output_dir

    # Write into a hidden sibling and rename it into place at the end, so an interrupted run never leaves a
    # half-written folder behind that the next run would have to tell apart from a user's files.
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        counts = {"train": manifest["num_train_per_class"], "test": manifest["num_test_per_class"]}
        for split in SPLITS:
            split_dir = staging / split
            split_dir.mkdir()
            rows = []
            for label in SYNTHETIC_LABELS:
                for index, file_name in enumerate(_file_names(label, counts[split])):
                    audio = generate_clip(label, _clip_rng(manifest["seed"], split, label, index),
                                          manifest["sampling_rate"], manifest["duration_seconds"])
                    sf.write(split_dir / file_name, audio, manifest["sampling_rate"], subtype="PCM_16")
                    rows.append((file_name, label))
            with (split_dir / "metadata.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(("file_name", "label"))
                writer.writerows(rows)
        # The manifest goes last: its presence is what marks the set as finished.
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into_place(staging, output_dir, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def _move_into_place(staging: Path, output_dir: Path, manifest: dict[str, Any]) -> None:
    if output_dir.exists():
        # Only reached when it is an empty directory (checked above); remove it so the rename works on every OS.
        try:
            output_dir.rmdir()
        except OSError:
            pass
    try:
        staging.rename(output_dir)
    except OSError:
        # Another process may have finished the same set meanwhile; that is fine if it is identical.
        if _existing_set(output_dir, manifest) is None:
            raise
        shutil.rmtree(staging, ignore_errors=True)


def synthetic_audio_main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_eat.synthetic_audio",
        description="Write the built-in synthetic labelled audio set as an audiofolder (train/ and test/ with "
        "metadata.csv), loadable with datasets.load_dataset('audiofolder', data_dir=OUTPUT_DIR).",
    )
    parser.add_argument("output_dir", help="folder to create (must be new, empty, or hold the same set)")
    parser.add_argument("--num_train_per_class", type=int, default=DEFAULT_NUM_TRAIN_PER_CLASS)
    parser.add_argument("--num_test_per_class", type=int, default=DEFAULT_NUM_TEST_PER_CLASS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampling_rate", type=int, default=16000)
    parser.add_argument("--duration_seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        # The flags are named as write_audiofolder's parameters.
        path = write_audiofolder(**vars(args))
    except (FileExistsError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    num_classes = len(SYNTHETIC_LABELS)
    print(
        f"synthetic audio set in {path}: {num_classes} classes ({', '.join(SYNTHETIC_LABELS)}), "
        f"{args.num_train_per_class * num_classes} train and {args.num_test_per_class * num_classes} test clips"
    )
    return path


if __name__ == "__main__":
    synthetic_audio_main()
