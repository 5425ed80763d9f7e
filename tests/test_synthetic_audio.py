"""Tests for the quickstart's synthetic audio set (modeling_eat/synthetic_audio.py).

The class checks measure each clip with plain numpy (spectra, the analytic signal, envelopes) and compare with the
parameters the generator says it drew: a family is only useful to the quickstart if its defining property is
really in the audio, at every random draw.
"""

import csv
import json
import runpy
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf

from modeling_eat.synthetic_audio import (
    MANIFEST_NAME,
    SYNTHETIC_LABELS,
    generate_clip,
    synthesize_clip,
    synthetic_audio_main,
    write_audiofolder,
)


SR = 16000
# Enough draws per family to hit the corners of the parameter ranges, few enough to keep the file fast.
SEEDS = range(25)
# Fade ramps are at most 30 ms; measuring inside the event past them sees the steady part only.
FADE = int(0.035 * SR)


# ------------------------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------------------------


def analytic(x):
    spectrum = np.fft.fft(x.astype(np.float64))
    weights = np.zeros(len(x))
    weights[0] = 1.0
    weights[1:(len(x) + 1) // 2] = 2.0
    if len(x) % 2 == 0:
        weights[len(x) // 2] = 1.0
    return np.fft.ifft(spectrum * weights)


def interior(x, info, margin=FADE):
    return x[info["onset"] + margin: info["onset"] + info["length"] - margin]


def power_spectrum(x, pad_to=1 << 16):
    x = x.astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=pad_to)) ** 2
    return np.fft.rfftfreq(pad_to, 1.0 / SR), power


def peak_near(freqs, power, hz, tolerance=0.02):
    band = (freqs > hz * (1 - tolerance)) & (freqs < hz * (1 + tolerance))
    return power[band].max()


def second_peak_ratio(x):
    """Power of the strongest spectral component more than 10% away from the main peak, relative to the main one."""
    freqs, power = power_spectrum(x)
    main = np.argmax(power)
    far = np.abs(freqs - freqs[main]) > 0.1 * freqs[main]
    return power[far].max() / power[main], freqs[main]


def steady_analytic(clip, info):
    # Transform the whole clip and cut afterwards: cutting first would put steps at the ends, and the FFT-based
    # Hilbert transform rings at steps.
    return interior(analytic(clip.astype(np.float64)), info)


def block_frequencies(z, num_blocks):
    """Mean instantaneous frequency of analytic signal ``z`` in each of ``num_blocks`` equal blocks.

    The mean over a block is the unwrapped phase advance over it, which is far less noisy than the per-sample
    derivative.
    """
    phase = np.unwrap(np.angle(z))
    edges = np.linspace(0, len(z) - 1, num_blocks + 1).astype(int)
    return np.diff(phase[edges]) / (2 * np.pi * np.diff(edges) / SR)


def fit_sinusoid(track, rate, low_hz=2.0, high_hz=25.0):
    """Best least-squares ``c + a sin(2 pi f t + phi)`` for ``track`` sampled at ``rate``: returns (f, a, c)."""
    coarse = _fit_on_grid(track, rate, np.arange(low_hz, high_hz, 0.1))
    return _fit_on_grid(track, rate, np.arange(coarse[0] - 0.15, coarse[0] + 0.15, 0.01))


def _fit_on_grid(track, rate, f):
    t = np.arange(len(track)) / rate
    # All candidate frequencies at once: one (F, N, 3) design matrix, normal equations solved as a batch.
    design = np.stack(
        [np.ones((len(f), len(t))), np.sin(2 * np.pi * np.outer(f, t)), np.cos(2 * np.pi * np.outer(f, t))], axis=-1
    )
    gram = np.einsum("fni,fnj->fij", design, design)
    coef = np.linalg.solve(gram, np.einsum("fni,n->fi", design, track)[..., None])[..., 0]
    residual = np.sum((np.einsum("fni,fi->fn", design, coef) - track) ** 2, axis=1)
    best = np.argmin(residual)
    return f[best], np.hypot(coef[best, 1], coef[best, 2]), coef[best, 0]


def block_means(x, size):
    usable = len(x) // size * size
    return x[:usable].reshape(-1, size).mean(axis=1)


def welch_psd(x, size=256):
    x = x.astype(np.float64)
    hop = size // 2
    window = np.hanning(size)
    frames = np.stack([x[i:i + size] * window for i in range(0, len(x) - size + 1, hop)])
    return np.fft.rfftfreq(size, 1.0 / SR), (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)


def spectral_flatness(power):
    power = power + 1e-20
    return np.exp(np.mean(np.log(power))) / np.mean(power)


def click_onsets(x):
    """First sample of each run of samples above 40% of the peak, runs closer than 3 ms merged into one click."""
    loud = np.flatnonzero(np.abs(x) > 0.4 * np.abs(x).max())
    starts = [loud[0]]
    for previous, current in zip(loud[:-1], loud[1:]):
        if current - previous > 0.003 * SR:
            starts.append(current)
    return np.array(starts)


def crest_factor(x):
    return np.abs(x).max() / np.sqrt(np.mean(x.astype(np.float64) ** 2))


def clips(label):
    return [synthesize_clip(label, seed) for seed in SEEDS]


# ------------------------------------------------------------------------------------------------------------------
# Basic contract
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", SYNTHETIC_LABELS)
def test_format_range_and_determinism(label):
    first = generate_clip(label, np.random.default_rng(123))
    assert first.dtype == np.float32 and first.shape == (SR,)
    assert np.all(np.isfinite(first)) and np.abs(first).max() <= 1.0
    assert np.array_equal(first, generate_clip(label, np.random.default_rng(123)))
    # An int seed means the same as a Generator made from it.
    assert np.array_equal(first, generate_clip(label, 123))
    assert not np.allclose(first, generate_clip(label, np.random.default_rng(124)))
    # The generator is consumed, so two calls with one Generator give two different clips.
    rng = np.random.default_rng(5)
    assert not np.allclose(generate_clip(label, rng), generate_clip(label, rng))


def test_other_formats_and_bad_arguments():
    for label in SYNTHETIC_LABELS:
        clip = generate_clip(label, 0, sampling_rate=8000, duration_seconds=0.5)
        assert clip.shape == (4000,) and np.abs(clip).max() <= 1.0
        clip = generate_clip(label, 0, sampling_rate=22050, duration_seconds=2.0)
        assert clip.shape == (44100,) and np.abs(clip).max() <= 1.0
    with pytest.raises(ValueError, match="unknown label"):
        generate_clip("speech", 0)
    with pytest.raises(ValueError, match="sampling_rate"):
        generate_clip("tone", 0, sampling_rate=4000)
    with pytest.raises(ValueError, match="duration_seconds"):
        generate_clip("tone", 0, duration_seconds=0.0)


def test_onsets_gains_and_background_vary():
    onsets, peaks = [], []
    for seed in SEEDS:
        clip = generate_clip("tone", seed)
        envelope = block_means(np.abs(clip), 80)
        onsets.append(np.argmax(envelope > 0.3 * envelope.max()) * 80 / SR)
        peaks.append(np.abs(clip).max())
        # Background noise: no exactly silent stretch, even outside the event.
        assert np.mean(clip[:200] == 0) < 0.5
    assert min(onsets) < 0.1 and max(onsets) > 0.3
    assert 20 * np.log10(max(peaks) / min(peaks)) > 10


# ------------------------------------------------------------------------------------------------------------------
# Each family has its defining property
# ------------------------------------------------------------------------------------------------------------------


def test_tone_is_a_single_steady_spectral_peak():
    for clip, info in clips("tone"):
        steady = interior(clip, info)
        ratio, peak_hz = second_peak_ratio(steady)
        assert abs(peak_hz / info["frequency"] - 1) < 0.005
        # Any overtone or noise is at least 12 dB below the fundamental.
        assert ratio < 10 ** (-12 / 10), (info, ratio)
        # The pitch does not move.
        z = steady_analytic(clip, info)
        frequencies = block_frequencies(z, 8)
        assert frequencies.max() / frequencies.min() < 1.01, (info, frequencies)
        # And the level does not either (contrast with am_tone). 10 ms blocks average out the fast ripple that a
        # faint overtone puts on the envelope of a low tone.
        envelope = block_means(np.abs(z), 160)
        assert envelope.std() / envelope.mean() < 0.05


def test_chirp_frequency_moves_monotonically():
    directions = set()
    for clip, info in clips("chirp"):
        frequencies = block_frequencies(steady_analytic(clip, info), 8)
        direction = np.sign(info["end_hz"] - info["start_hz"])
        directions.add(direction)
        assert np.all(np.diff(frequencies) * direction > 0), (info, frequencies)
        low, high = sorted((info["start_hz"], info["end_hz"]))
        assert low * 0.98 < frequencies.min() and frequencies.max() < high * 1.02
        # The sweep spans a large range even inside the fades.
        assert frequencies.max() / frequencies.min() > 1.5
    assert directions == {-1.0, 1.0}


def test_noise_burst_is_flat_within_its_band_and_localised_in_time():
    for clip, info in clips("noise_burst"):
        x = clip.astype(np.float64)
        start, end = info["onset"], info["onset"] + info["length"]
        outside = np.concatenate([x[:start], x[end:]])
        if len(outside):
            assert np.mean(x[start:end] ** 2) > 10 * np.mean(outside ** 2), info
        freqs, psd = welch_psd(x[start:end])
        # Stay a couple of bins clear of the band edges, where the window's leakage rounds the spectrum off.
        inner = (freqs > info["low_hz"] + 150) & (freqs < info["high_hz"] - 150)
        assert spectral_flatness(psd[inner]) > 0.5, info
        inside = (freqs >= info["low_hz"] - 100) & (freqs <= info["high_hz"] + 100)
        # Most energy is in the band; the rest is the broadband background floor.
        assert psd[inside].sum() > 0.9 * psd.sum()


def test_tonal_classes_are_not_flat():
    # Contrast for the flatness test above: a tone has no flat band 1 kHz wide around it.
    for clip, info in clips("tone")[:10]:
        freqs, psd = welch_psd(interior(clip, info))
        around = np.abs(freqs - info["frequency"]) < 500
        assert spectral_flatness(psd[around]) < 0.1


def test_clicks_are_a_periodic_impulse_train():
    for clip, info in clips("clicks"):
        assert crest_factor(clip) > 6, info
        onsets = click_onsets(clip)
        assert len(onsets) == len(info["click_positions"]) >= 3
        assert abs(onsets[0] - info["click_positions"][0]) <= 2
        intervals = np.diff(onsets)
        assert intervals.std() / intervals.mean() < 0.02, (info, intervals)
        assert abs(intervals.mean() / (SR / info["rate"]) - 1) < 0.01
    # Contrast: sustained sounds have a low crest factor.
    for label in ("tone", "am_tone", "chirp"):
        for clip, _ in clips(label)[:5]:
            assert crest_factor(clip) < 4.5


def test_am_tone_envelope_is_periodically_modulated():
    for clip, info in clips("am_tone"):
        z = steady_analytic(clip, info)
        # The envelope averaged over 2.5 ms blocks: smooth at carrier scale, still fine for a <= 20 Hz modulation.
        envelope = block_means(np.abs(z), 40)
        rate, amplitude, mean = fit_sinusoid(envelope, SR / 40)
        assert abs(rate - info["modulation_hz"]) < 0.3, (info, rate)
        assert abs(amplitude / mean - info["depth"]) < 0.1, (info, amplitude / mean)
        # The carrier is the strongest component; the modulation only adds sidebands around it. (Its
        # instantaneous frequency is no measure here: at full depth the envelope touches zero and the phase slips.)
        _, peak_hz = second_peak_ratio(interior(clip, info))
        assert abs(peak_hz / info["carrier_hz"] - 1) < 0.005


def test_fm_tone_frequency_oscillates_around_the_carrier():
    for clip, info in clips("fm_tone"):
        z = steady_analytic(clip, info)
        # Instantaneous frequency in 5 ms blocks, many per modulation period (<= 15 Hz).
        track = block_frequencies(z, len(z) // 80)
        rate, amplitude, mean = fit_sinusoid(track, SR / 80)
        assert abs(rate - info["modulation_hz"]) < 0.3, (info, rate)
        assert abs(amplitude / info["deviation_hz"] - 1) < 0.1, (info, amplitude)
        assert abs(mean / info["carrier_hz"] - 1) < 0.02
        # Unlike a chirp it goes both ways.
        assert np.any(np.diff(track) > 0) and np.any(np.diff(track) < 0)


def test_harmonic_stack_has_many_peaks_at_integer_multiples():
    for clip, info in clips("harmonic_stack"):
        steady = interior(clip, info)
        freqs, power = power_spectrum(steady)
        f0 = info["fundamental_hz"]
        harmonics = np.array([peak_near(freqs, power, k * f0) for k in range(1, len(info["amplitudes"]) + 1)])
        strongest = power.max()
        assert np.isclose(harmonics.max(), strongest)
        # At least three partials within 20 dB of the strongest: not a tone.
        assert np.sum(harmonics > strongest * 10 ** (-20 / 10)) >= 3, info
        # And the spectrum halfway between partials is down at the noise floor: the peaks sit at integer
        # multiples of f0.
        between = np.array([peak_near(freqs, power, (k + 0.5) * f0, 0.02 / (k + 0.5)) for k in range(1, 4)])
        assert np.all(between < strongest * 10 ** (-30 / 10))
        ratio, _ = second_peak_ratio(steady)
        assert ratio > 10 ** (-20 / 10)


# ------------------------------------------------------------------------------------------------------------------
# The audiofolder on disk
# ------------------------------------------------------------------------------------------------------------------


def read_metadata(split_dir):
    with (split_dir / "metadata.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_write_audiofolder_layout(tmp_path):
    out = write_audiofolder(tmp_path / "synthetic", num_train_per_class=3, num_test_per_class=2, seed=7)
    assert out == tmp_path / "synthetic"
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST_NAME, "train", "test"])
    # Nothing left behind beside it by the write-then-rename.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 7 and manifest["labels"] == list(SYNTHETIC_LABELS)

    for split, per_class in (("train", 3), ("test", 2)):
        fieldnames, rows = read_metadata(out / split)
        assert fieldnames == ["file_name", "label"]
        assert len(rows) == per_class * len(SYNTHETIC_LABELS)
        assert {label: sum(r["label"] == label for r in rows) for label in SYNTHETIC_LABELS} == dict.fromkeys(
            SYNTHETIC_LABELS, per_class
        )
        assert sorted(p.name for p in (out / split).glob("*.wav")) == sorted(r["file_name"] for r in rows)
        for row in rows:
            info = sf.info(out / split / row["file_name"])
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, SR, "PCM_16")
            assert row["file_name"].startswith(row["label"] + "_")

    train_audio = [sf.read(p)[0] for p in sorted((out / "train").glob("*.wav"))]
    test_audio = [sf.read(p)[0] for p in sorted((out / "test").glob("*.wav"))]
    assert all(np.abs(a).max() <= 1.0 for a in train_audio + test_audio)
    # Every clip is its own draw: no duplicates within or across splits.
    fingerprints = {a.tobytes() for a in train_audio + test_audio}
    assert len(fingerprints) == len(train_audio) + len(test_audio)


def test_write_audiofolder_is_deterministic(tmp_path):
    a = write_audiofolder(tmp_path / "a", num_train_per_class=2, num_test_per_class=1, seed=3)
    b = write_audiofolder(tmp_path / "b", num_train_per_class=2, num_test_per_class=1, seed=3)
    c = write_audiofolder(tmp_path / "c", num_train_per_class=2, num_test_per_class=1, seed=4)
    # More clips per class leaves the first ones unchanged: each clip has its own random stream.
    d = write_audiofolder(tmp_path / "d", num_train_per_class=3, num_test_per_class=1, seed=3)
    for path in sorted((a / "train").glob("*.wav")):
        name = path.relative_to(a)
        assert path.read_bytes() == (b / name).read_bytes()
        assert path.read_bytes() == (d / name).read_bytes()
        assert path.read_bytes() != (c / name).read_bytes()
    assert (a / "train" / "metadata.csv").read_bytes() == (b / "train" / "metadata.csv").read_bytes()


def test_write_audiofolder_reuses_the_same_set(tmp_path):
    out = write_audiofolder(tmp_path / "synthetic", num_train_per_class=1, num_test_per_class=1)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert write_audiofolder(out, num_train_per_class=1, num_test_per_class=1) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps
    # An existing empty folder is fine to fill.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_audiofolder(empty, num_train_per_class=1, num_test_per_class=1) / MANIFEST_NAME).is_file()


def test_write_audiofolder_refuses_to_overwrite(tmp_path):
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing"):
        write_audiofolder(user_dir, num_train_per_class=1, num_test_per_class=1)
    assert [p.name for p in user_dir.iterdir()] == ["notes.txt"]
    assert (user_dir / "notes.txt").read_text() == "precious"

    out = write_audiofolder(tmp_path / "synthetic", num_train_per_class=1, num_test_per_class=1, seed=0)
    with pytest.raises(FileExistsError, match="seed"):
        write_audiofolder(out, num_train_per_class=1, num_test_per_class=1, seed=1)
    with pytest.raises(FileExistsError, match="num_train_per_class"):
        write_audiofolder(out, num_train_per_class=2, num_test_per_class=1, seed=0)
    next(iter((out / "test").glob("*.wav"))).unlink()
    with pytest.raises(FileExistsError, match="incomplete"):
        write_audiofolder(out, num_train_per_class=1, num_test_per_class=1, seed=0)

    a_file = tmp_path / "file.wav"
    a_file.write_bytes(b"")
    with pytest.raises(FileExistsError):
        write_audiofolder(a_file, num_train_per_class=1, num_test_per_class=1)
    with pytest.raises(ValueError):
        write_audiofolder(tmp_path / "zero", num_train_per_class=0, num_test_per_class=1)
    # No staging folders left behind by the failures.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_load_dataset_audiofolder(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # datasets reads the variables at import time, which may already have happened in this process.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    out = write_audiofolder(tmp_path / "synthetic", num_train_per_class=2, num_test_per_class=1, seed=0)
    ds = datasets.load_dataset("audiofolder", data_dir=str(out), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "test"}
    assert ds["train"].num_rows == 2 * len(SYNTHETIC_LABELS) and ds["test"].num_rows == len(SYNTHETIC_LABELS)
    assert set(ds["train"].column_names) == {"audio", "label"}
    assert sorted(ds["train"]["label"]) == sorted(list(SYNTHETIC_LABELS) * 2)
    assert sorted(ds["test"]["label"]) == sorted(SYNTHETIC_LABELS)

    example = ds["test"][0]
    audio = example["audio"]
    if isinstance(audio, dict):  # datasets < 4 decodes to a dict
        samples, rate = np.asarray(audio["array"]), audio["sampling_rate"]
    else:  # datasets >= 4 hands back a torchcodec AudioDecoder
        decoded = audio.get_all_samples()
        samples, rate = decoded.data.numpy()[0], decoded.sample_rate
    assert rate == SR and samples.shape == (SR,)
    on_disk = {r["label"]: r["file_name"] for r in read_metadata(out / "test")[1]}
    expected, _ = sf.read(out / "test" / on_disk[example["label"]])
    assert np.allclose(samples, expected, atol=1e-4)


def test_command_line(tmp_path, capsys, monkeypatch):
    arguments = ["--num_train_per_class", "1", "--num_test_per_class", "1"]
    out = synthetic_audio_main([str(tmp_path / "cli"), *arguments, "--seed", "2"])
    assert "7 train and 7 test clips" in capsys.readouterr().out
    assert json.loads((out / MANIFEST_NAME).read_text())["seed"] == 2
    with pytest.raises(SystemExit) as exit_info:
        synthetic_audio_main([str(tmp_path / "cli"), *arguments, "--seed", "3"])
    assert exit_info.value.code == 2
    assert "refusing to overwrite" in capsys.readouterr().err

    # The module's entry point; the same parameters reuse the folder. run_module rather than a subprocess: a fresh
    # interpreter would spend seconds importing numpy and soundfile again.
    argv = ["synthetic_audio", str(out), "--num_train_per_class", "1", "--num_test_per_class", "1", "--seed", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
        runpy.run_module("modeling_eat.synthetic_audio", run_name="__main__")
    assert str(out) in capsys.readouterr().out
