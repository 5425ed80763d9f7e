"""Data pipeline of EAT pre-training: random crops of decodable clips, and the collator that turns them into
normalised fbank `input_values` and the student masks.

Audio is read with `Audio(decode=False)` and decoded by `modeling_eat.audio.decode_audio` rather than by `datasets`,
so that one undecodable or empty file costs a skipped example (counted and carried in the batch as `num_skipped`)
instead of the whole run.

Every random choice of the pipeline (the crop offset of a clip, the masks of a batch) is drawn from a generator
seeded by `(seed, epoch, example index)`, not from a global random state. A run resumed in the middle of an epoch
therefore sees exactly the crops and masks of an uninterrupted run, whatever the number of dataloader workers.

A streamed data set is read by every process from its own shards (`split_stream_by_process`); where each process
stands in its stream (`StreamPosition`) is saved with each checkpoint, and a resumed stream passes over the examples
already used without decoding them.
"""

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..audio import (
    SAMPLING_RATE,
    AudioDecodingError,
    SeededEpochSampler,
    UndecodableAudioLog,
    decode_audio,
    random_crop,
    seconds_to_samples,
)
from ..feature_extraction_eat import EATFeatureExtractor
from ..masking_eat import EATMaskGenerator
from ..runtime import CommandError


logger = logging.getLogger(__name__)


def derived_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of integer keys (e.g. seed, epoch, index)."""
    state = np.random.SeedSequence([int(key) for key in keys]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


class EpochShuffleSampler(SeededEpochSampler):
    """A seeded shuffle that yields `(epoch, index)` keys, so the dataset can derive each example's randomness."""

    def __init__(self, num_examples: int, seed: int = 0, shuffle: bool = True):
        super().__init__(num_examples, seed)
        self.shuffle = shuffle

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=self.epoch_generator())
        else:
            order = torch.arange(self.num_samples)
        return iter([(self.epoch, index) for index in order.tolist()])


class _CroppedAudioSource:
    """What both data set views share: the audio column, the crop length (and whether clips shorter than it are
    tiled to fill it) and the seed the crops are keyed by."""

    def __init__(
        self,
        dataset,
        audio_column_name: str = "audio",
        max_length_seconds: float = 10.0,
        seed: int = 0,
        sampling_rate: int = SAMPLING_RATE,
        tile_short_clips: bool = False,
    ):
        self.dataset = dataset
        self.audio_column_name = audio_column_name
        self.num_samples = seconds_to_samples(max_length_seconds, sampling_rate)
        self.seed = seed
        self.sampling_rate = sampling_rate
        self.tile_short_clips = tile_short_clips
        # Warned once per file and process; the counts travel in the batches.
        self.log_skip = UndecodableAudioLog(logger)

    def cropped_example(self, waveform: np.ndarray, num_skipped: int, key: tuple) -> dict:
        crop_generator = np.random.default_rng(derived_seed(self.seed, *key))
        return {
            "waveform": random_crop(waveform, self.num_samples, crop_generator, self.tile_short_clips),
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
        raise CommandError(
            f"{max_attempts} consecutive examples from index {index} of the '{self.audio_column_name}' column could "
            "not be decoded: check --audio_column_name and the files (the warnings above name them)."
        )


@dataclass
class StreamPosition:
    """Where one process stands in its stream: the epoch, the batches it has used of it, and how many examples of
    the epoch each of its dataloader workers has handed out (decodable or not)."""

    epoch: int = 0
    batches_in_epoch: int = 0
    worker_positions: dict[int, int] = field(default_factory=dict)

    def start_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.batches_in_epoch, self.worker_positions = epoch, 0, {}

    def advance(self, example_keys: torch.Tensor) -> None:
        """Counts a used batch, given the `(epoch, worker, position)` keys of its examples (`example_keys`)."""
        self.batches_in_epoch += 1
        for _, worker, position in example_keys.tolist():
            self.worker_positions[worker] = max(self.worker_positions.get(worker, 0), position + 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "StreamPosition":
        positions = {int(worker): int(position) for worker, position in values.get("worker_positions", {}).items()}
        return cls(int(values["epoch"]), int(values["batches_in_epoch"]), positions)


def split_stream_by_process(dataset, process_index: int, num_processes: int):
    """This process's part of a streamed data set: whole shards when their number divides by the processes (each
    process then reads only its own files), else every `num_processes`-th example of all of them (logged)."""
    if num_processes == 1:
        return dataset
    from datasets.distributed import split_dataset_by_node

    num_shards = getattr(dataset, "num_shards", None)
    if num_shards is not None and num_shards % num_processes:
        logger.warning(
            f"the stream has {num_shards} shards, not a multiple of {num_processes} processes: every process reads "
            f"all of them and keeps every {num_processes}-th example. Write the data set in a multiple of "
            f"{num_processes} shards (modeling_eat.audio.write_parquet_shards) so that each reads only its own."
        )
    part = split_dataset_by_node(dataset, rank=process_index, world_size=num_processes)
    logger.info(f"process {process_index} of {num_processes} streams {part.num_shards} of {num_shards} shards")
    return part


class StreamingPretrainingAudioDataset(_CroppedAudioSource, torch.utils.data.IterableDataset):
    """Iterable counterpart for `--streaming`: undecodable examples are skipped and counted in the next one's
    `num_skipped`. Crops are keyed by `(epoch, worker, position)`; after `resume_from(position)` each worker passes
    over the examples it had handed out in that epoch, without decoding them."""

    def __init__(self, dataset, *args, **kwargs):
        super().__init__(dataset, *args, **kwargs)
        self.epoch = 0
        self.resume_position = StreamPosition()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def resume_from(self, position: StreamPosition) -> None:
        self.resume_position = position

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else 0
        resumed = self.resume_position
        used = resumed.worker_positions.get(worker_id, 0) if self.epoch == resumed.epoch else 0
        num_skipped = 0
        for position, example in enumerate(self.dataset):
            if position < used:
                continue
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
    adding to it (its throughput per worker is in BENCHMARKS.md, "Data loading"). The masks are drawn here too, so
    the training step never waits on the host for them.
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
            truncation=True,  # a crop's last frames, short of a whole patch row, go on purpose
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
            # `(epoch, index)` or, streamed, `(epoch, worker, position)`: where the batch came from.
            "example_keys": torch.tensor([example["key"] for example in examples]),
        }


__all__ = [
    "EATPretrainingCollator",
    "EpochShuffleSampler",
    "PretrainingAudioDataset",
    "StreamPosition",
    "StreamingPretrainingAudioDataset",
    "derived_seed",
    "split_stream_by_process",
]
