"""Data pipeline of EAT pre-training: decode, resample to 16 kHz mono, random crop, fbank and masks in the collator.

Not shipped to the Hub (it needs `datasets`, `soundfile` and optionally `torchcodec`); `training/pretrain.py` wires it.

Audio is read with `Audio(decode=False)` and decoded here rather than by `datasets`, so that one undecodable or empty
file costs a skipped example (counted and carried in the batch as `num_skipped`) instead of the whole run.

Every random choice of the pipeline (the crop offset of a clip, the masks of a batch) is drawn from a generator
seeded by `(seed, epoch, example index)`, not from a global random state. A run resumed in the middle of an epoch
therefore sees exactly the crops and masks of an uninterrupted run, whatever the number of dataloader workers.
"""

import functools
import io
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .feature_extraction_eat import PRESETS as FEATURE_EXTRACTOR_PRESETS
from .feature_extraction_eat import EATFeatureExtractor, kaldi_num_frames
from .masking_eat import EATMaskGenerator


logger = logging.getLogger(__name__)

SAMPLING_RATE = 16000
# Shorter than one 25 ms fbank frame: nothing to learn from, and the feature extractor rejects it.
MIN_NUM_SAMPLES = 400


class AudioDecodingError(ValueError):
    """An example whose audio cannot be turned into a usable 16 kHz mono waveform."""


def derived_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of integer keys (e.g. seed, epoch, index)."""
    state = np.random.SeedSequence([int(key) for key in keys]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


@functools.lru_cache(maxsize=16)
def _resampling_kernels(
    orig: int, new: int, lowpass_filter_width: int, rolloff: float
) -> tuple[torch.Tensor, int]:
    # Cut-off as a fraction of the input rate; the filters are written in input-sample units.
    cutoff = rolloff * min(orig, new) / orig
    half_width = math.ceil(lowpass_filter_width / cutoff)
    offsets = torch.arange(-half_width, half_width + orig, dtype=torch.float64)
    phases = torch.arange(new, dtype=torch.float64)[:, None] * orig / new
    distance = offsets[None, :] - phases
    window = torch.where(
        distance.abs() <= half_width, torch.cos(distance * math.pi / (2 * half_width)) ** 2, torch.zeros(())
    )
    return cutoff * torch.sinc(cutoff * distance) * window, half_width


def resample(
    waveform: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """Band-limited resampling of `(..., num_samples)` with a Hann-windowed sinc, in polyphase form.

    The rates are reduced by their gcd to `orig` in and `new` out; output sample `k * new + p` sits `p * orig / new`
    input samples after input sample `k * orig`, so each of the `new` phases is one filter applied every `orig` input
    samples. The low-pass cut-off is `rolloff` times the lower Nyquist frequency; `lowpass_filter_width` zero
    crossings of the sinc are kept on each side.
    """
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sampling rates must be positive, got {orig_freq} and {new_freq}")
    if orig_freq == new_freq:
        return waveform
    common = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // common, int(new_freq) // common
    kernels, half_width = _resampling_kernels(orig, new, lowpass_filter_width, float(rolloff))
    kernels = kernels.to(waveform.dtype)

    shape = waveform.shape
    signal = F.pad(waveform.reshape(-1, shape[-1]), (half_width, half_width + orig))
    # A matmul over strided windows: conv1d with a stride in the hundreds is several times slower on CPU.
    output = (signal.unfold(-1, kernels.shape[1], orig) @ kernels.T).flatten(1)
    num_output = math.ceil(shape[-1] * new / orig)
    return output[:, :num_output].reshape(*shape[:-1], num_output)


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
    minimum = MIN_NUM_SAMPLES * sampling_rate // SAMPLING_RATE
    if waveform.shape[0] < minimum:
        raise AudioDecodingError(f"{name}: {waveform.shape[0]} samples, shorter than one 25 ms frame ({minimum})")
    if not np.isfinite(waveform).all():
        raise AudioDecodingError(f"{name}: the decoded audio contains NaN or infinite samples")
    return np.ascontiguousarray(waveform, dtype=np.float32)


def random_crop(waveform: np.ndarray, num_samples: int, generator: np.random.Generator) -> np.ndarray:
    """A random window of `num_samples`; shorter clips come back whole (the fbank is padded instead)."""
    if waveform.shape[0] <= num_samples:
        return waveform
    offset = int(generator.integers(0, waveform.shape[0] - num_samples + 1))
    return waveform[offset : offset + num_samples]


def crop_num_frames(max_length_seconds: float, patch_size: int = 16, sampling_rate: int = SAMPLING_RATE) -> int:
    """Fbank frames of a crop of `max_length_seconds`, rounded down to whole patches (10 s -> 998 -> 992 frames)."""
    num_frames = kaldi_num_frames(int(round(max_length_seconds * sampling_rate)), sampling_rate)
    num_frames -= num_frames % patch_size
    if num_frames < patch_size:
        raise ValueError(
            f"--max_length_seconds {max_length_seconds} gives fewer fbank frames than one patch ({patch_size} frames, "
            f"about {(patch_size * 10 + 15) / 1000:.2f} s): use a longer crop."
        )
    return num_frames


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A seeded shuffle that yields `(epoch, index)` keys, so the dataset can derive each example's randomness.

    The order of epoch `e` is a permutation drawn from `seed + e`; call `set_epoch` (accelerate's
    `DataLoaderShard.set_epoch` forwards to it) before iterating.
    """

    def __init__(self, num_examples: int, seed: int = 0, shuffle: bool = True):
        self.num_examples = num_examples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_examples

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.num_examples)
        return iter([(self.epoch, index) for index in order.tolist()])


class _SkipLogger:
    """Warns once per file and process; the counts travel in the batches."""

    def __init__(self):
        self.seen = set()

    def __call__(self, error: AudioDecodingError) -> None:
        message = str(error)
        if message not in self.seen:
            self.seen.add(message)
            logger.warning(f"skipping undecodable audio: {message}")


class _CroppedAudioSource:
    """What both data set views share: the audio column, the crop length and the seed the crops are keyed by."""

    def __init__(
        self,
        dataset,
        audio_column_name: str = "audio",
        max_length_seconds: float = 10.0,
        seed: int = 0,
        sampling_rate: int = SAMPLING_RATE,
    ):
        self.dataset = dataset
        self.audio_column_name = audio_column_name
        self.num_samples = int(round(max_length_seconds * sampling_rate))
        self.seed = seed
        self.sampling_rate = sampling_rate
        self.log_skip = _SkipLogger()

    def cropped_example(self, waveform: np.ndarray, num_skipped: int, key: tuple) -> dict:
        crop_generator = np.random.default_rng(derived_seed(self.seed, *key))
        return {
            "waveform": random_crop(waveform, self.num_samples, crop_generator),
            "num_skipped": num_skipped,
            "key": key,
        }


class PretrainingAudioDataset(_CroppedAudioSource, torch.utils.data.Dataset):
    """Map-style view of an audio data set (audio column cast to `Audio(decode=False)`) yielding random crops.

    Indexed by `(epoch, index)` keys from `EpochShuffleSampler` (a plain index means epoch 0). An example that cannot
    be decoded is replaced by the next decodable one, so batches keep their size (a distributed step needs the same
    work on every rank); `num_skipped` says how many were passed over.
    """

    def __init__(self, dataset, *args, max_consecutive_failures: int = 100, **kwargs):
        super().__init__(dataset, *args, **kwargs)
        self.max_consecutive_failures = max_consecutive_failures

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        max_attempts = min(self.max_consecutive_failures, len(self))
        for num_skipped in range(max_attempts):
            try:
                audio = self.dataset[(index + num_skipped) % len(self)][self.audio_column_name]
                waveform = decode_audio(audio, self.sampling_rate)
            except AudioDecodingError as error:
                self.log_skip(error)
                continue
            return self.cropped_example(waveform, num_skipped, (epoch, index))
        raise RuntimeError(
            f"{max_attempts} consecutive examples from index {index} of the '{self.audio_column_name}' column could "
            "not be decoded: check --audio_column_name and the files (the warnings above name them)."
        )


class StreamingPretrainingAudioDataset(_CroppedAudioSource, torch.utils.data.IterableDataset):
    """Iterable counterpart for `--streaming`: undecodable examples are skipped and counted in the next one's
    `num_skipped`. Crops are keyed by `(epoch, worker, position)`."""

    def __init__(self, dataset, *args, **kwargs):
        super().__init__(dataset, *args, **kwargs)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else 0
        num_skipped = 0
        for position, example in enumerate(self.dataset):
            try:
                waveform = decode_audio(example[self.audio_column_name], self.sampling_rate)
            except AudioDecodingError as error:
                self.log_skip(error)
                num_skipped += 1
                continue
            yield self.cropped_example(waveform, num_skipped, (self.epoch, worker_id, position))
            num_skipped = 0


class EATPretrainingCollator:
    """Crops → normalised fbank `input_values` `(batch, num_frames, 128)` + student masks `bool_masked_pos`.

    The fbank runs here, on the CPU of the dataloader workers, so it overlaps with the training step instead of
    adding to it. Measured on the project's 2-core CPU machine (one thread, 12 clips of 10 s): one batched
    `kaldi_fbank` call 0.18 s, 12 per-clip calls 0.18 s (the CPU path is chunked either way), this collator 0.25 s,
    i.e. ~50 clips/s per worker. Batching on the accelerator would only pay off where the workers cannot keep up with
    the GPU. The masks are drawn here too, so the training step never waits on the host for them.
    """

    def __init__(
        self,
        feature_extractor: EATFeatureExtractor,
        mask_generator: EATMaskGenerator,
        num_frames: int,
        patch_size: int = 16,
        seed: int = 0,
    ):
        if num_frames % patch_size != 0:
            raise ValueError(f"num_frames ({num_frames}) must be a multiple of the patch size ({patch_size})")
        self.feature_extractor = feature_extractor
        self.mask_generator = mask_generator
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.seed = seed

    def __call__(self, examples: Sequence[dict]) -> dict:
        features = self.feature_extractor(
            [example["waveform"] for example in examples],
            sampling_rate=self.feature_extractor.sampling_rate,
            max_length=self.num_frames,
            return_tensors="pt",
        )
        keys = [value for example in examples for value in example["key"]]
        generator = torch.Generator().manual_seed(derived_seed(self.seed, *keys))
        bool_masked_pos = self.mask_generator(
            len(examples),
            self.num_frames // self.patch_size,
            self.feature_extractor.num_mel_bins // self.patch_size,
            generator=generator,
        )
        return {
            "input_values": features["input_values"],
            "bool_masked_pos": bool_masked_pos,
            # Per example, so that accelerate can split a dispatched batch along dim 0 like the other tensors.
            "num_skipped": torch.tensor([example["num_skipped"] for example in examples]),
        }


def load_audio_dataset(
    dataset_name: str,
    dataset_config_name: str | None = None,
    split: str = "train",
    audio_column_name: str = "audio",
    label_column_name: str | None = None,
    streaming: bool = False,
    max_samples: int | None = None,
):
    """`load_dataset` (a Hub id or a local folder) reduced to the audio (and label) column, audio left undecoded:
    our own decoding then skips broken files instead of failing the whole run."""
    from datasets import Audio, load_dataset

    dataset = load_dataset(dataset_name, dataset_config_name, split=split, streaming=streaming)
    options = {audio_column_name: "--audio_column_name", label_column_name: "--label_column_name"}
    column_names = dataset.column_names
    for column, option in options.items():
        if column is not None and column_names is not None and column not in column_names:
            raise ValueError(
                f"{option} {column!r} is not a column of {dataset_name} (split {split}); its columns are "
                f"{column_names}. Pass the right name with {option}."
            )
    dataset = dataset.select_columns([column for column in options if column is not None])
    dataset = dataset.cast_column(audio_column_name, Audio(decode=False))
    if max_samples is not None:
        dataset = dataset.take(max_samples) if streaming else dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def load_feature_extractor(name_or_path: str | None) -> EATFeatureExtractor:
    """A preset name (`audioset`, `esc50`, `spc2`), a saved extractor, or the AudioSet defaults EAT pre-trains with."""
    if name_or_path is None:
        return EATFeatureExtractor.from_preset("audioset")
    if name_or_path in FEATURE_EXTRACTOR_PRESETS:
        return EATFeatureExtractor.from_preset(name_or_path)
    return EATFeatureExtractor.from_pretrained(name_or_path)


__all__ = [
    "AudioDecodingError",
    "EATPretrainingCollator",
    "EpochShuffleSampler",
    "PretrainingAudioDataset",
    "StreamingPretrainingAudioDataset",
    "crop_num_frames",
    "decode_audio",
    "derived_seed",
    "load_feature_extractor",
    "load_audio_dataset",
    "random_crop",
    "resample",
]
