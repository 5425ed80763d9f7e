"""The pre-training data pipeline (modeling_eat/pretraining/data.py): skipping undecodable clips, seeded crops, the
epoch sampler, the collator, and streams: one part per process, resumed where they stood."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_eat import EATConfig, EATFeatureExtractor, EATMaskGenerator
from modeling_eat.audio import crop_num_frames, decode_audio
from modeling_eat.pretraining.data import (
    EATPretrainingCollator,
    EpochShuffleSampler,
    PretrainingAudioDataset,
    StreamingPretrainingAudioDataset,
    StreamPosition,
    split_stream_by_process,
)
from modeling_eat.runtime import CommandError

from eat_testing import tone, write_wav


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

    # A data set with nothing decodable ends the command in one line (CommandError), not a traceback.
    with pytest.raises(CommandError, match="could not be decoded: check --audio_column_name"):
        PretrainingAudioDataset([{"audio": b} for b in bad])[0]


# -------------------------------------------------------------------------------------------------- crops, collator


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


def test_streaming_dataset_skips_bad_examples_and_counts_them(tmp_path):
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


def test_resumed_stream_passes_over_used_examples_without_decoding_them(tmp_path, monkeypatch):
    from modeling_eat.pretraining import data

    rows = [{"audio": write_wav(tmp_path / f"{i}.wav", tone(200.0 + 50 * i, 16000, 1.0), 16000)} for i in range(6)]
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVE")
    rows.insert(3, {"audio": {"bytes": None, "path": str(tmp_path / "bad.wav")}})
    collator = EATPretrainingCollator(EATFeatureExtractor(), EATMaskGenerator(EATConfig.from_preset("tiny")), 96)
    uninterrupted = list(torch.utils.data.DataLoader(
        StreamingPretrainingAudioDataset(rows, max_length_seconds=0.5), batch_size=2, collate_fn=collator
    ))
    position = StreamPosition()
    for batch in uninterrupted[:2]:
        position.advance(batch["example_keys"])
    # Two batches used: examples 0-1, then 2 and 4 (3 is undecodable), so the stream stands at example 5.
    assert position == StreamPosition(epoch=0, batches_in_epoch=2, worker_positions={0: 5})
    assert StreamPosition.from_dict(json.loads(json.dumps(position.to_dict()))) == position

    decoded = []
    real_decode = data.decode_audio

    def recording_decode(audio, sampling_rate):
        decoded.append(audio["path"])
        return real_decode(audio, sampling_rate)

    monkeypatch.setattr(data, "decode_audio", recording_decode)
    resumed_dataset = StreamingPretrainingAudioDataset(rows, max_length_seconds=0.5)
    resumed_dataset.resume_from(position)
    resumed = list(torch.utils.data.DataLoader(resumed_dataset, batch_size=2, collate_fn=collator))
    assert decoded == [rows[5]["audio"]["path"], rows[6]["audio"]["path"]]
    assert len(resumed) == 1
    for name in ("input_values", "bool_masked_pos", "example_keys"):
        torch.testing.assert_close(resumed[0][name], uninterrupted[2][name])
    # The next epoch starts from its beginning.
    resumed_dataset.set_epoch(1)
    assert len(list(resumed_dataset)) == 6


def test_each_process_streams_its_own_shards(tmp_path, caplog):
    from datasets import Dataset

    from modeling_eat.audio import load_audio_dataset, write_parquet_shards

    names = [f"clip{i}.wav" for i in range(8)]
    paths = [write_wav(tmp_path / name, tone(300.0 + 10 * i, 16000, 0.1), 16000)["path"] for i, name in
             enumerate(names)]
    files = write_parquet_shards(Dataset.from_dict({"audio": paths}), tmp_path / "shards", num_shards=4)
    assert [file.name for file in files] == [f"train-0000{i}-of-00004.parquet" for i in range(4)]

    stream = load_audio_dataset(str(tmp_path / "shards"), streaming=True)
    assert stream.num_shards == 4
    parts = [split_stream_by_process(stream, rank, 2) for rank in range(2)]
    assert [part.num_shards for part in parts] == [2, 2]
    seen = [[Path(example["audio"]["path"]).name for example in part] for part in parts]
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == names
    # The shards hold the audio itself: the source files can go.
    for path in paths:
        Path(path).unlink()
    example = next(iter(parts[1]))
    assert decode_audio(example["audio"]).shape == (1600,)
    assert split_stream_by_process(stream, 0, 1) is stream

    # Shards that do not divide among the processes: each reads all of them and keeps its share, and is told why.
    with caplog.at_level("WARNING"):
        thirds = [[example["audio"]["path"] for example in split_stream_by_process(stream, rank, 3)]
                  for rank in range(3)]
    assert "4 shards, not a multiple of 3 processes" in caplog.text
    assert sorted(sum(thirds, [])) == names and not set(thirds[0]) & set(thirds[1])


def test_short_clips_fill_the_crop_when_tiled(tmp_path):
    rows = [{"audio": write_wav(tmp_path / "short.wav", tone(440.0, 16000, 0.3), 16000)}]
    assert PretrainingAudioDataset(rows, max_length_seconds=1.0)[(0, 0)]["waveform"].shape == (4800,)
    tiled = PretrainingAudioDataset(rows, max_length_seconds=1.0, tile_short_clips=True)[(0, 0)]["waveform"]
    assert tiled.shape == (16000,) and np.abs(tiled).max() > 0.4
