"""Audio in, below every workflow: decoding files to 16 kHz mono, resampling, loading data sets, random crops, the
feature extractor a model goes with, and the one geometry of seconds, samples, fbank frames and patches.

Not shipped with saved folders (the decoders need `soundfile` or `torchcodec`, data sets need `datasets`); the shipped
files never import it.
"""

import contextlib
import csv
import io
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

# The resampler and the frame geometry ship with saved folders (the pipeline needs them); they live there.
from .audio_io_eat import resample
from .feature_extraction_eat import (
    NORMALIZATION_PRESETS,
    EATFeatureExtractor,
    kaldi_num_frames,
    kaldi_num_samples,
    patch_aligned,
)
from .runtime import CommandError, quiet_progress_bars, refuse_unknown_preset


logger = logging.getLogger(__name__)

SAMPLING_RATE = 16000


class AudioDecodingError(ValueError):
    """An example whose audio cannot be turned into a usable 16 kHz mono waveform."""


# ---------------------------------------------------------------------------------------------------------- geometry


def seconds_to_samples(seconds: float, sampling_rate: int = SAMPLING_RATE) -> int:
    return int(round(seconds * sampling_rate))


def crop_num_frames(
    max_length_seconds: float, patch_size: int = 16, sampling_rate: int = SAMPLING_RATE, max_frames: int | None = None
) -> int:
    """Fbank frames of a random crop of `max_length_seconds`, rounded down to whole patches (10 s: 998 -> 992).
    A crop shorter than one patch, or longer than `max_frames` (the model's longest input, `config.max_input_frames`),
    is refused in one line before any audio is read: a huge one would otherwise allocate its batch until the process
    is killed."""
    num_frames = patch_aligned(
        kaldi_num_frames(seconds_to_samples(max_length_seconds, sampling_rate), sampling_rate), patch_size
    )
    if num_frames < patch_size:
        raise CommandError(
            f"--max_length_seconds {max_length_seconds} gives fewer fbank frames than one patch ({patch_size} frames, "
            f"{kaldi_num_samples(patch_size, sampling_rate) / sampling_rate:.3f} s): use a longer crop."
        )
    if max_frames is not None and num_frames > max_frames:
        raise CommandError(
            f"--max_length_seconds {max_length_seconds} ({num_frames} frames) is longer than the model takes "
            f"({max_frames} frames, {kaldi_num_samples(max_frames, sampling_rate) / sampling_rate:.2f} s: "
            "config.max_input_frames): use a shorter crop."
        )
    return num_frames


# ---------------------------------------------------------------------------------------------------------- decoding


def _audio_source(audio) -> tuple[object, str]:
    """The bytes or path to decode from, and a name for messages, of an `Audio(decode=False)` value or a path."""
    if isinstance(audio, dict):
        path = audio.get("path") or "<in-memory audio>"
        if audio.get("bytes"):
            return audio["bytes"], path
        if audio.get("path"):
            return audio["path"], path
        raise AudioDecodingError(f"{path}: the example holds neither audio bytes nor a path")
    if isinstance(audio, (str, bytes)):
        return audio, audio if isinstance(audio, str) else "<in-memory audio>"
    raise AudioDecodingError(
        f"expected an audio column cast to `Audio(decode=False)` (a dict with 'bytes'/'path') or a file path, got "
        f"{type(audio).__name__}"
    )


def _decode_with_soundfile(source) -> tuple[np.ndarray, int]:
    import soundfile

    data, sampling_rate = soundfile.read(
        io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32", always_2d=True
    )
    # soundfile returns (frames, channels).
    return data.mean(axis=1), sampling_rate


def _decode_with_torchcodec(source, sampling_rate: int) -> np.ndarray:
    from torchcodec.decoders import AudioDecoder

    samples = AudioDecoder(source, sample_rate=sampling_rate, num_channels=1).get_all_samples()
    return samples.data.mean(dim=0).numpy()


def decode_audio(audio, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Float32 mono waveform at `sampling_rate` of an `Audio(decode=False)` value (or a path or bytes).

    soundfile reads WAV/FLAC/OGG; anything it cannot read goes to torchcodec's FFmpeg decoder, which also resamples
    and down-mixes. Raises `AudioDecodingError` when neither can decode it, or when the audio is empty, shorter than
    one 25 ms frame, or not finite.
    """
    source, name = _audio_source(audio)
    try:
        waveform, source_rate = _decode_with_soundfile(source)
        if source_rate != sampling_rate:
            waveform = resample(torch.from_numpy(waveform), source_rate, sampling_rate).numpy()
    except Exception as soundfile_error:
        try:
            waveform = _decode_with_torchcodec(source, sampling_rate)
        except Exception as torchcodec_error:
            raise AudioDecodingError(
                f"{name}: soundfile failed ({soundfile_error}) and torchcodec failed ({torchcodec_error})"
            ) from torchcodec_error
    # Shorter than one 25 ms fbank frame: nothing to learn from, and the feature extractor rejects it.
    minimum = kaldi_num_samples(1, sampling_rate)
    if waveform.shape[0] < minimum:
        raise AudioDecodingError(f"{name}: {waveform.shape[0]} samples, shorter than one 25 ms frame ({minimum})")
    if not np.isfinite(waveform).all():
        raise AudioDecodingError(f"{name}: the decoded audio contains NaN or infinite samples")
    return np.ascontiguousarray(waveform, dtype=np.float32)


class UndecodableAudioLog:
    """The one rule of every workflow for audio that cannot be decoded (`AudioDecodingError`): the example is left
    out, a warning names the file and why (once per file and process), and the run lists what it skipped at its end
    (`skipped_audio_message`)."""

    def __init__(self, log: logging.Logger = logger):
        self.log = log
        self.names: list[str] = []

    def __call__(self, error: AudioDecodingError, name: str | None = None) -> None:
        """Warns about `error` unless its file (`name`, else the message) was warned about already."""
        key = str(error) if name is None else name
        if key not in self.names:
            self.names.append(key)
            self.log.warning(f"skipping undecodable audio: {error}")


def skipped_audio_message(skipped: Sequence[str], total: int | None = None) -> str:
    """The end-of-run line listing the files a run left out because they could not be decoded."""
    of = f" of {total}" if total is not None else ""
    return (
        f"skipped {len(skipped)}{of} files that could not be decoded (the warnings above say why): "
        + ", ".join(skipped)
    )


def random_crop(
    waveform: np.ndarray, num_samples: int, generator: np.random.Generator, tile_short: bool = False
) -> np.ndarray:
    """A random window of `num_samples`. A shorter clip comes back whole (the fbank is padded instead), or with
    `tile_short` repeated end to end and cut at a random offset, so that the window holds only audio."""
    if waveform.shape[0] < num_samples and tile_short and waveform.shape[0] > 0:
        waveform = np.tile(waveform, math.ceil(num_samples / waveform.shape[0]) + 1)
    if waveform.shape[0] <= num_samples:
        return waveform
    offset = int(generator.integers(0, waveform.shape[0] - num_samples + 1))
    return waveform[offset : offset + num_samples]



# ------------------------------------------------------------------------------------------------- data and models


class SeededEpochSampler(torch.utils.data.Sampler):
    """A sampler whose order in epoch `e` depends on `seed + e` only, so that every process of a distributed run and
    a resumed run draw the same order. Subclasses draw it in `__iter__` from `self.epoch_generator()`; call
    `set_epoch` (accelerate's `DataLoaderShard.set_epoch` forwards to it) before iterating."""

    def __init__(self, num_samples: int, seed: int = 0):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def epoch_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)


# datasets' message for a split a data set does not have.
UNKNOWN_SPLIT = re.compile(r'Unknown split "(.*)"\. Should be one of \[(.*)\]')
AUDIOFOLDER_HINT = (
    "an audiofolder (train/ and test/ folders holding the audio and a metadata.csv with file_name,label) or a Hub "
    "data set id"
)


def labels_hint(column: str, split: str, option: str = "--label_column_name") -> str:
    """Where an audiofolder's labels come from, for a data set without (or with an empty) label column."""
    return (
        f"an audiofolder takes them from a metadata.csv beside the audio (columns file_name,{column}) or from class "
        f"folders ({split}/<label>/clip.wav); add one, or name the label column with {option}"
    )


def check_dataset_name(name, option: str = "--dataset_name") -> None:
    """Refuses, in one line and before anything is written, an empty `--dataset_name` (which would otherwise read
    the current folder) and a local path that does not exist (which datasets would look up on the Hub)."""
    from .hub import is_hub_id

    name = "" if name is None else str(name)
    if not name.strip():
        raise CommandError(f"{option} is empty: pass {AUDIOFOLDER_HINT}.")
    path = Path(name)
    if path.exists():
        if path.is_dir() and not any(path.iterdir()):
            raise CommandError(f"{option} {name} is an empty folder: pass {AUDIOFOLDER_HINT}.")
        return
    if not is_hub_id(name):
        raise CommandError(f"{option} {name}: no such folder (and not a Hub id): check the path.")


def open_dataset(
    name: str,
    config_name: str | None = None,
    *,
    option: str = "--dataset_name",
    split_option: str = "--split_name",
    as_audiofolder: bool = False,
    **kwargs,
):
    """`datasets.load_dataset` of a Hub id or a local folder (read as an audiofolder with `as_audiofolder`), with
    the failures a user can fix (no such folder, no audio in it, a name the Hub does not serve, no such split) as
    one-line `CommandError`s, and no progress bars for a local folder."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetNotFoundError

    check_dataset_name(name, option)
    local = Path(name).exists()
    if as_audiofolder and Path(name).is_dir():
        arguments, kwargs = ("audiofolder",), {**kwargs, "data_dir": name}
    else:
        arguments = (name, config_name)
    try:
        with quiet_progress_bars() if local else contextlib.nullcontext():
            return load_dataset(*arguments, **kwargs)
    except (FileNotFoundError, ConnectionError, DatasetNotFoundError) as error:
        if local:
            raise CommandError(
                f"{option} {name}: the folder could not be read ({first_line(error)}): pass {AUDIOFOLDER_HINT}."
            ) from None
        raise CommandError(
            f"{option} {name} is no folder here, and the Hub data set of that id could not be read "
            f"({first_line(error)}): check the path, or the id and the connection."
        ) from None
    except ValueError as error:
        unknown_split = UNKNOWN_SPLIT.search(str(error))
        if unknown_split is not None:
            split, splits = unknown_split.group(1), unknown_split.group(2).replace("'", "")
            raise CommandError(
                f"{split_option} {split}: {name} has no such split (it has {splits}): pass one of those."
            ) from None
        if not local:
            raise
        # datasets' own reading of the folder failed (train/ and test/ metadata.csv with other columns, ...).
        raise CommandError(
            f"{option} {name}: the folder could not be read as an audio data set ({first_line(error)}): fix that, "
            f"or pass {AUDIOFOLDER_HINT}."
        ) from None


def first_line(error: BaseException) -> str:
    """`Type: first line of the message`, for a one-line report of a library's multi-line error."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def check_label_values(values: Sequence, column: str, dataset_name: str, split: str,
                       option: str = "--label_column_name") -> None:
    """Refuses a label column without labels (an audiofolder without metadata.csv has a label column of None values,
    which would fail inside training) or with some rows unlabelled."""
    missing = sum(value is None for value in values)
    if values and missing == len(values):
        raise CommandError(
            f"{dataset_name} ({split} split) has no labels in its {column!r} column: "
            f"{labels_hint(column, split, option)}."
        )
    if missing:
        raise CommandError(
            f"{missing} of {len(values)} rows of {dataset_name} ({split} split) have no {column!r} label: fill them "
            "in or drop those rows."
        )


def load_audio_dataset(
    dataset_name: str,
    dataset_config_name: str | None = None,
    split: str = "train",
    audio_column_name: str = "audio",
    label_column_name: str | None = None,
    streaming: bool = False,
    max_samples: int | None = None,
    split_option: str = "--split_name",
):
    """`load_dataset` (a Hub id or a local folder) reduced to the audio (and label) column, audio left undecoded:
    our own decoding then skips broken files instead of failing the whole run. `split_option` is the command's
    name for `split`, for its messages."""
    from datasets import Audio

    dataset = open_dataset(
        dataset_name, dataset_config_name, split=split, streaming=streaming, split_option=split_option
    )
    options = {audio_column_name: "--audio_column_name", label_column_name: "--label_column_name"}
    column_names = dataset.column_names
    for column, option in options.items():
        if column is not None and column_names is not None and column not in column_names:
            fix = f"pass the right name with {option}"
            if column == label_column_name:
                fix = labels_hint(column, split, option)
            raise CommandError(
                f"{option} {column!r} is not a column of {dataset_name} ({split} split; its columns are "
                f"{', '.join(column_names)}): {fix}."
            )
    dataset = dataset.select_columns([column for column in options if column is not None])
    dataset = dataset.cast_column(audio_column_name, Audio(decode=False))
    if max_samples is not None:
        dataset = dataset.take(max_samples) if streaming else dataset.select(range(min(max_samples, len(dataset))))
    if label_column_name is not None and not streaming:
        check_label_values(dataset[label_column_name], label_column_name, dataset_name, split)
    return dataset


def _read_metadata(split_dir: Path) -> list[dict]:
    metadata = Path(split_dir) / "metadata.csv"
    if not metadata.is_file():
        raise CommandError(
            f"{split_dir.parent} is not an audiofolder with a {split_dir.name} split ({metadata} is missing): pass "
            f"{AUDIOFOLDER_HINT.split(' or a Hub')[0]}."
        )
    with metadata.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write_linked_split(split_dir: Path, rows: list[tuple[Path, dict]], columns: Sequence[str]) -> None:
    """An audiofolder split of symlinks: `(source split folder, metadata row)` pairs, each under a sub-folder named
    after its source so that equal file names of two sources do not clash."""
    split_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (source_split, row) in enumerate(rows):
        relative = Path(source_split.parent.name) / row["file_name"] if len(columns) == 1 else Path(row["file_name"])
        link = split_dir / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to((source_split / row["file_name"]).resolve())
        written.append([str(relative), *(row[column] for column in columns[1:])])
    with (split_dir / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(written)


def merge_train_splits(sources: Sequence[Path], output_dir: Path) -> Path:
    """An audiofolder whose `train/` lists every clip of the sources' `train/` splits, linked rather than copied,
    without labels: unlabeled pre-training data."""
    rows = [(Path(source) / "train", row) for source in sources for row in _read_metadata(Path(source) / "train")]
    names = [Path(source).name for source in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"the sources' folder names must differ (they name the merged sub-folders), got {names}")
    _write_linked_split(Path(output_dir) / "train", rows, ["file_name"])
    return Path(output_dir)


def speaker_fold(source: Path, output_dir: Path, held_out: str, speaker_column: str = "speaker") -> Path:
    """An audiofolder made of `source`'s train split only, to choose settings on without touching its test split:
    `test/` is the clips of speaker `held_out`, `train/` the other speakers' (links, every metadata column kept)."""
    source, output_dir = Path(source), Path(output_dir)
    rows = _read_metadata(source / "train")
    if not rows or speaker_column not in rows[0]:
        raise ValueError(f"{source}/train/metadata.csv has no {speaker_column!r} column to make speaker folds with")
    speakers = sorted({row[speaker_column] for row in rows})
    if held_out not in speakers:
        raise ValueError(f"speaker {held_out!r} is not in {source}'s train split; its speakers are {speakers}")
    columns = ["file_name", *(column for column in rows[0] if column != "file_name")]
    for split, held in (("train", False), ("test", True)):
        kept = [(source / "train", row) for row in rows if (row[speaker_column] == held_out) == held]
        _write_linked_split(output_dir / split, kept, columns)
    return output_dir


def labelled_subset(
    source: Path, output_dir: Path, per_class: int, label_column_name: str = "label", seed: int | None = None
) -> Path:
    """An audiofolder with `per_class` clips of each label of `source`'s train split and all of its other splits,
    linked rather than copied: few-label fine-tuning data. The first clips of each label, or with `seed` a random
    draw of them (listed in the split's order): a split sorted by speaker would otherwise give every label's clips
    of its first speaker alone."""
    source, output_dir = Path(source), Path(output_dir)
    rows = _read_metadata(source / "train")
    by_label = {}
    for index, row in enumerate(rows):
        by_label.setdefault(row[label_column_name], []).append(index)
    if seed is None:
        chosen = {index for indices in by_label.values() for index in indices[:per_class]}
    else:
        generator = np.random.default_rng(seed)
        chosen = {
            int(index) for indices in by_label.values()
            for index in generator.choice(indices, size=min(per_class, len(indices)), replace=False)
        }
    kept = [(source / "train", row) for index, row in enumerate(rows) if index in chosen]
    _write_linked_split(output_dir / "train", kept, ["file_name", label_column_name])
    for split in sorted(path for path in source.iterdir() if path.is_dir() and path.name != "train"):
        rows = [(split, row) for row in _read_metadata(split)]
        _write_linked_split(output_dir / split.name, rows, ["file_name", label_column_name])
    return output_dir


def write_parquet_shards(
    dataset, output_dir, num_shards: int, split: str = "train", audio_column_name: str = "audio"
) -> list[Path]:
    """Writes a `datasets.Dataset` as `num_shards` parquet files that hold the audio bytes themselves (not paths to
    them): `output_dir/{split}-00000-of-0000N.parquet`, ...; `load_dataset(output_dir, streaming=True)` then streams
    it as `num_shards` shards, so that each process of a distributed `--streaming` run reads only its own files.
    Use a multiple of the number of processes (and of dataloader workers per process)."""
    from datasets import Audio
    from datasets.table import embed_table_storage

    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dataset = dataset.cast_column(audio_column_name, Audio(decode=False))
    paths = []
    for index in range(num_shards):
        shard = dataset.shard(num_shards, index, contiguous=True)
        # What `push_to_hub` does to its shards: the bytes of local files go into the table.
        shard = shard.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
        path = output_dir / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        shard.to_parquet(str(path))
        paths.append(path)
    return paths




def _named_feature_extractor(name: str, **kwargs) -> EATFeatureExtractor:
    """`--feature_extractor_name`: a preset, a folder or a Hub id, or a one-line `CommandError` (a near miss of a
    preset, `audiosett`, is named as such rather than looked up on the Hub)."""
    from .hub import is_hub_id

    if name not in NORMALIZATION_PRESETS and not Path(name).exists():
        refuse_unknown_preset(
            "--feature_extractor_name", name, NORMALIZATION_PRESETS, "preset", "a folder or a Hub id",
            found_elsewhere=is_hub_id(name),
        )
    try:
        return EATFeatureExtractor.from_name_or_path(name, **kwargs)
    except OSError as error:
        problem = first_line(error)
    raise CommandError(
        f"--feature_extractor_name {name}: no feature extractor could be read there ({problem}): pass a preset "
        f"({', '.join(NORMALIZATION_PRESETS)}), or a folder or Hub id holding a preprocessor_config.json."
    )


def load_feature_extractor(
    feature_extractor_name: str | None = None, model_name_or_path: str | None = None, **kwargs
) -> EATFeatureExtractor:
    """The feature extractor that goes with a run: `feature_extractor_name` (a normalization preset, or a saved
    extractor) when given; else the model's own (from its folder or Hub id) when it has one; else the AudioSet
    preset EAT pre-trains with. `kwargs` (e.g. `cache_dir`, `token`) go to `from_pretrained`."""
    if feature_extractor_name is not None:
        return _named_feature_extractor(str(feature_extractor_name), **kwargs)
    if model_name_or_path is not None:
        try:
            return EATFeatureExtractor.from_pretrained(model_name_or_path, **kwargs)
        except OSError:
            logger.warning(
                f"{model_name_or_path} has no preprocessor_config.json: using the AudioSet feature extractor "
                "statistics (pass --feature_extractor_name to choose)."
            )
    return EATFeatureExtractor.from_preset("audioset")


__all__ = [
    "AUDIOFOLDER_HINT",
    "SAMPLING_RATE",
    "AudioDecodingError",
    "SeededEpochSampler",
    "UndecodableAudioLog",
    "check_dataset_name",
    "check_label_values",
    "crop_num_frames",
    "decode_audio",
    "first_line",
    "labels_hint",
    "load_audio_dataset",
    "labelled_subset",
    "load_feature_extractor",
    "merge_train_splits",
    "open_dataset",
    "speaker_fold",
    "random_crop",
    "seconds_to_samples",
    "skipped_audio_message",
    "write_parquet_shards",
]
