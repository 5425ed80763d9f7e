"""Unit tests of the pre-training data pipeline (modeling_eat/pretraining_data.py) and loop helpers
(modeling_eat/pretraining_loop.py)."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch

from modeling_eat import EATConfig, EATFeatureExtractor, EATForPreTraining, EATMaskGenerator
from modeling_eat.pretraining_data import (
    AudioDecodingError,
    EATPretrainingCollator,
    EpochShuffleSampler,
    PretrainingAudioDataset,
    crop_num_frames,
    decode_audio,
    load_audio_dataset,
    random_crop,
    resample,
)
from modeling_eat.pretraining_loop import (
    PROGRESS_FILE,
    TrainingProgress,
    build_pretraining_config,
    check_supported_distributed_setup,
    check_teacher_precision,
    find_latest_checkpoint,
    optimizer_param_groups,
    resolve_checkpoint,
    save_checkpoint,
)


def tone(frequency: float, sampling_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    time = np.arange(int(sampling_rate * seconds)) / sampling_rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def peak_frequency(waveform: np.ndarray, sampling_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.argmax(spectrum) * sampling_rate / len(waveform))


def write_wav(path: Path, waveform: np.ndarray, sampling_rate: int) -> dict:
    soundfile.write(path, waveform, sampling_rate, subtype="FLOAT")
    return {"bytes": None, "path": str(path)}


# ---------------------------------------------------------------------------------------------- decoding, resampling


@pytest.mark.parametrize("source_rate", [8000, 44100])
def test_decoding_resamples_to_16k_and_keeps_the_tone(tmp_path, source_rate):
    audio = write_wav(tmp_path / "tone.wav", tone(1000.0, source_rate, 1.0), source_rate)
    waveform = decode_audio(audio)
    assert waveform.dtype == np.float32 and waveform.shape == (16000,)
    assert peak_frequency(waveform, 16000) == pytest.approx(1000.0, abs=1.0)
    # Away from the edges the resampled tone is the 16 kHz tone itself: amplitude and phase are kept.
    np.testing.assert_allclose(waveform[400:-400], tone(1000.0, 16000, 1.0)[400:-400], atol=2e-3)


def test_resampling_removes_content_above_the_new_nyquist():
    # 7 kHz survives 44.1 -> 16 kHz; 10 kHz lies above 8 kHz and must not alias down to 6 kHz.
    mixture = tone(7000.0, 44100, 1.0) + tone(10000.0, 44100, 1.0)
    resampled = resample(torch.from_numpy(mixture), 44100, 16000).numpy()
    spectrum = np.abs(np.fft.rfft(resampled[1000:-1000]))
    bin_of = lambda hz: int(round(hz * (len(resampled) - 2000) / 16000))  # noqa: E731
    assert spectrum[bin_of(6000)] < 1e-2 * spectrum[bin_of(7000)]


def test_bytes_and_the_torchcodec_fallback_decode(tmp_path):
    from torchcodec.encoders import AudioEncoder

    # soundfile cannot read AAC in an MP4 container: this one goes through torchcodec (with resampling to 16 kHz).
    path = tmp_path / "tone.m4a"
    AudioEncoder(torch.from_numpy(tone(440.0, 22050, 1.0))[None], sample_rate=22050).to_file(str(path))
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.read(path)
    waveform = decode_audio({"bytes": path.read_bytes(), "path": "tone.m4a"})
    assert abs(len(waveform) - 16000) < 1600
    assert peak_frequency(waveform, 16000) == pytest.approx(440.0, abs=2.0)


def test_multichannel_audio_is_down_mixed(tmp_path):
    left = tone(500.0, 16000, 0.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    waveform = decode_audio(write_wav(tmp_path / "stereo.wav", stereo, 16000))
    np.testing.assert_allclose(waveform, 0.5 * left, atol=1e-7)


def test_corrupt_empty_and_too_short_files_are_rejected(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path in (corrupt, empty):
        with pytest.raises(AudioDecodingError, match="soundfile failed .* torchcodec failed"):
            decode_audio({"bytes": None, "path": str(path)})
    with pytest.raises(AudioDecodingError, match="shorter than one 25 ms frame"):
        decode_audio(write_wav(tmp_path / "short.wav", tone(440.0, 16000, 0.01), 16000))
    with pytest.raises(AudioDecodingError, match="neither audio bytes nor a path"):
        decode_audio({"bytes": None, "path": None})


def test_dataset_skips_bad_examples_and_counts_them(tmp_path):
    good = [write_wav(tmp_path / f"good{i}.wav", tone(300.0 * (i + 1), 16000, 0.5), 16000) for i in range(2)]
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    (tmp_path / "empty.wav").write_bytes(b"")
    bad = [{"bytes": None, "path": str(tmp_path / name)} for name in ("bad.wav", "empty.wav")]
    rows = [{"audio": good[0]}, {"audio": bad[0]}, {"audio": bad[1]}, {"audio": good[1]}]
    dataset = PretrainingAudioDataset(rows, max_length_seconds=1.0)

    first = dataset[(0, 0)]
    assert first["num_skipped"] == 0 and first["key"] == (0, 0)
    # The two bad files are passed over for the next decodable one, so the batch keeps its size.
    replaced = dataset[(0, 1)]
    assert replaced["num_skipped"] == 2 and replaced["key"] == (0, 1)
    np.testing.assert_allclose(replaced["waveform"], decode_audio(good[1]))

    with pytest.raises(RuntimeError, match="could not be decoded: check --audio_column_name"):
        PretrainingAudioDataset([{"audio": b} for b in bad])[0]


# -------------------------------------------------------------------------------------------------- crops, collator


def test_crop_lengths_are_whole_patches():
    assert crop_num_frames(10.0) == 992  # 998 Kaldi frames, rounded down to 62 patches
    assert crop_num_frames(1.0) == 96
    with pytest.raises(ValueError, match="fewer fbank frames than one patch"):
        crop_num_frames(0.1)
    long = np.arange(50000, dtype=np.float32)
    window = random_crop(long, 16000, np.random.default_rng(3))
    assert window.shape == (16000,) and np.all(np.diff(window) == 1)  # one contiguous window
    short = long[:5000]
    assert random_crop(short, 16000, np.random.default_rng(3)) is short


def test_crops_depend_on_epoch_and_index_only(tmp_path):
    rows = [{"audio": write_wav(tmp_path / "long.wav", np.random.default_rng(0).standard_normal(48000), 16000)}]
    dataset = PretrainingAudioDataset(rows, max_length_seconds=1.0, seed=5)
    again = PretrainingAudioDataset(rows, max_length_seconds=1.0, seed=5)
    np.testing.assert_array_equal(dataset[(2, 0)]["waveform"], again[(2, 0)]["waveform"])
    assert not np.array_equal(dataset[(2, 0)]["waveform"], dataset[(3, 0)]["waveform"])


def test_sampler_shuffles_each_epoch_and_yields_keys():
    sampler = EpochShuffleSampler(10, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert {epoch for epoch, _ in first} == {0} and {epoch for epoch, _ in second} == {1}
    assert sorted(i for _, i in first) == list(range(10)) == sorted(i for _, i in second)
    assert [i for _, i in first] != [i for _, i in second]
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_collator_shapes_padding_and_masks():
    config = EATConfig.from_preset("tiny")
    extractor = EATFeatureExtractor()
    num_frames = crop_num_frames(1.0)
    collator = EATPretrainingCollator(extractor, EATMaskGenerator(config), num_frames, seed=0)
    examples = [
        {"waveform": tone(440.0, 16000, 1.0), "num_skipped": 0, "key": (0, 4)},
        {"waveform": tone(880.0, 16000, 0.3), "num_skipped": 2, "key": (0, 9)},
    ]
    batch = collator(examples)

    assert batch["input_values"].shape == (2, 96, 128)
    # The 0.3 s clip has 28 frames; the rest is EAT's padding, a zero fbank normalised.
    padding = (0.0 - extractor.mean) / (2 * extractor.std)
    torch.testing.assert_close(batch["input_values"][1, 28:], torch.full((68, 128), padding))
    assert not torch.allclose(batch["input_values"][1, 27], torch.full((128,), padding))
    np.testing.assert_allclose(
        batch["input_values"][0].numpy(),
        extractor(tone(440.0, 16000, 1.0), sampling_rate=16000, max_length=96)["input_values"][0],
        atol=1e-6,
    )

    masks = batch["bool_masked_pos"]
    assert masks.dtype == torch.bool and masks.shape == (2 * 16, 6 * 8)
    # 20% of the 48 patches visible in every clone row (int(48 * 0.2) = 9).
    assert ((~masks).sum(dim=1) == 9).all()
    assert batch["num_skipped"].tolist() == [0, 2]
    torch.testing.assert_close(collator(examples)["bool_masked_pos"], masks)
    other_epoch = [dict(example, key=(1, example["key"][1])) for example in examples]
    assert not torch.equal(collator(other_epoch)["bool_masked_pos"], masks)


def test_collator_masks_of_the_maskspec_objective():
    config = EATConfig.from_preset("tiny", pretraining_objective="maskspec")
    collator = EATPretrainingCollator(EATFeatureExtractor(), EATMaskGenerator(config), 96)
    batch = collator([{"waveform": tone(440.0, 16000, 1.0), "num_skipped": 0, "key": (0, 0)}] * 3)
    assert batch["bool_masked_pos"].shape == (3, 48)
    assert (batch["bool_masked_pos"].sum(dim=1) == 36).all()  # 75% of 48


def test_load_audio_dataset_keeps_undecoded_audio(tmp_path):
    split = tmp_path / "train"
    split.mkdir()
    write_wav(split / "a.wav", tone(440.0, 16000, 0.5), 16000)
    (split / "broken.wav").write_bytes(b"garbage")
    (split / "metadata.csv").write_text("file_name,label\na.wav,x\nbroken.wav,y\n")
    dataset = load_audio_dataset(str(tmp_path), max_samples=1)
    assert dataset.column_names == ["audio"] and len(dataset) == 1
    assert dataset[0]["audio"]["path"].endswith("a.wav")
    assert len(load_audio_dataset(str(tmp_path))) == 2  # the broken file is only found when decoded
    with pytest.raises(ValueError, match="--audio_column_name 'sound' is not a column"):
        load_audio_dataset(str(tmp_path), audio_column_name="sound")


# ------------------------------------------------------------------------------------------------------- loop pieces


def test_param_groups_exclude_biases_norms_and_the_teacher():
    model = EATForPreTraining(EATConfig.from_preset("tiny"))
    decay, no_decay = optimizer_param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "eat.layers.0.attention.qkv_proj.weight" in decay_names
    assert "eat.embeddings.patch_embeddings.projection.weight" in decay_names
    assert {"eat.layers.0.attention.qkv_proj.bias", "eat.layers.0.attention_norm.weight"} <= no_decay_names
    assert all(n.endswith(".bias") or model.get_parameter(n).ndim == 1 for n in no_decay_names)
    assert not any(n.startswith("teacher.") for n in decay_names | no_decay_names)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decay_names | no_decay_names == trainable and not decay_names & no_decay_names


def test_pretraining_config_presets_files_and_objective_override(tmp_path):
    assert build_pretraining_config("tiny").hidden_size == 64
    assert build_pretraining_config(None).hidden_size == 768
    switched = build_pretraining_config("tiny", pretraining_objective="maskspec")
    assert (switched.mask_strategy, switched.mask_ratio, switched.clone_batch) == ("random", 0.75, 1)
    EATConfig.from_preset("tiny", num_hidden_layers=2, average_top_k_layers=2).to_json_file(tmp_path / "c.json")
    assert build_pretraining_config(str(tmp_path / "c.json")).num_hidden_layers == 2
    with pytest.raises(ValueError, match="neither a preset"):
        build_pretraining_config("huge")


def test_latest_checkpoint_ignores_temporary_and_incomplete_folders(tmp_path):
    assert find_latest_checkpoint(tmp_path / "missing") is None
    for name, complete in [("step_3", True), ("step_12", True), ("step_20.tmp", True), ("step_15", False)]:
        (tmp_path / name).mkdir()
        if complete:
            TrainingProgress(completed_steps=int(name.split("_")[1].split(".")[0])).save(tmp_path / name / PROGRESS_FILE)
    (tmp_path / "step_99.txt").write_text("")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "step_12"
    assert resolve_checkpoint("latest", tmp_path) == tmp_path / "step_12"
    assert resolve_checkpoint(str(tmp_path / "step_3"), tmp_path) == tmp_path / "step_3"
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "step_15"), tmp_path)
    with pytest.raises(FileNotFoundError, match="no complete step_\\* checkpoint"):
        resolve_checkpoint("latest", tmp_path / "step_15")


class RecordingAccelerator:
    """The part of `accelerate.Accelerator` that `save_checkpoint` uses, with a save that can fail half-way."""

    is_main_process = True

    def __init__(self, fail: bool = False):
        self.fail = fail

    def wait_for_everyone(self):
        pass

    def save_state(self, output_dir):
        Path(output_dir).mkdir(parents=True)
        (Path(output_dir) / "model.safetensors").write_text("weights")
        if self.fail:
            raise KeyboardInterrupt("killed while saving")


def test_checkpoint_save_is_atomic(tmp_path):
    first = save_checkpoint(RecordingAccelerator(), tmp_path, TrainingProgress(3, 0, 3, 1))
    assert first == tmp_path / "step_3" and (first / "model.safetensors").is_file()
    assert json.loads((first / PROGRESS_FILE).read_text()) == {
        "completed_steps": 3, "epoch": 0, "batches_in_epoch": 3, "skipped_bad_audio": 1
    }

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(RecordingAccelerator(fail=True), tmp_path, TrainingProgress(6, 1, 2, 1))
    assert (tmp_path / "step_6.tmp" / "model.safetensors").is_file() and not (tmp_path / "step_6").exists()
    assert find_latest_checkpoint(tmp_path) == first

    # The next save of that step clears the leftover and publishes a complete folder.
    assert save_checkpoint(RecordingAccelerator(), tmp_path, TrainingProgress(6, 1, 2, 1)) == tmp_path / "step_6"
    assert not (tmp_path / "step_6.tmp").exists()
    assert TrainingProgress.load(find_latest_checkpoint(tmp_path) / PROGRESS_FILE) == TrainingProgress(6, 1, 2, 1)
    # Saving a step again replaces it whole.
    save_checkpoint(RecordingAccelerator(), tmp_path, TrainingProgress(6, 1, 2, 5))
    assert TrainingProgress.load(tmp_path / "step_6" / PROGRESS_FILE).skipped_bad_audio == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_3", "step_6"]


def test_zero3_fsdp_and_half_precision_teachers_are_refused():
    def accelerator(zero_stage=None, fsdp=None):
        plugin = SimpleNamespace(zero_stage=zero_stage) if zero_stage is not None else None
        return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin, fsdp_plugin=fsdp))

    check_supported_distributed_setup(accelerator())
    check_supported_distributed_setup(accelerator(zero_stage=2))
    with pytest.raises(ValueError, match="ZeRO-3 is not supported"):
        check_supported_distributed_setup(accelerator(zero_stage=3))
    with pytest.raises(ValueError, match="FSDP shards"):
        check_supported_distributed_setup(accelerator(fsdp=object()))

    model = EATForPreTraining(EATConfig.from_preset("tiny"))
    check_teacher_precision(model)
    model.teacher.to(torch.bfloat16)
    with pytest.raises(ValueError, match="EMA update needs float32"):
        check_teacher_precision(model)


def test_streaming_dataset_skips_bad_examples_and_counts_them(tmp_path):
    from modeling_eat.pretraining_data import StreamingPretrainingAudioDataset

    good = write_wav(tmp_path / "good.wav", tone(440.0, 16000, 2.0), 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVE")
    bad = {"bytes": None, "path": str(tmp_path / "bad.wav")}
    dataset = StreamingPretrainingAudioDataset(
        [{"audio": good}, {"audio": bad}, {"audio": bad}, {"audio": good}], max_length_seconds=1.0
    )
    examples = list(dataset)
    assert [example["num_skipped"] for example in examples] == [0, 2]
    assert [example["key"] for example in examples] == [(0, 0, 0), (0, 0, 3)]
    assert all(example["waveform"].shape == (16000,) for example in examples)
