"""The audio an extraction reads: files given directly or found under folders, or the audio column of a data set,
decoded to mono at the extractor's rate in DataLoader workers."""

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..audio import AudioDecodingError, UndecodableAudioLog, decode_audio
from ..runtime import one_thread_per_worker


logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


def find_audio_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files given directly (any extension) and the .wav/.flac/.mp3/.ogg files under given folders, sorted."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise ValueError(f"no {'/'.join(AUDIO_EXTENSIONS)} files under the folder {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} is neither a file nor a folder")
    return files


def clip_name(source, index: int) -> str:
    """A path as given, the path of an `Audio(decode=False)` value, else `#index` (audio held only as bytes)."""
    if isinstance(source, dict):
        return source.get("path") or f"#{index}"
    return str(source)


class _DecodingDataset(torch.utils.data.Dataset):
    """`(name, waveform or None, error message or None)` per source, decoded in DataLoader workers."""

    def __init__(self, sources: Sequence, sampling_rate: int):
        self.sources, self.sampling_rate = sources, sampling_rate

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index):
        source = self.sources[index]
        try:
            return clip_name(source, index), decode_audio(source, self.sampling_rate), None
        except AudioDecodingError as error:
            return clip_name(source, index), None, str(error)


def _unbatched(item):
    return item


def decoded_clips(
    sources: Sequence, sampling_rate: int, num_workers: int = 0, skipped: list[str] | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """`(name, waveform)` of paths or `Audio(decode=False)` values, in order. A source that cannot be decoded raises,
    or, when a `skipped` list is given, is logged, left out and appended to it."""
    loader = torch.utils.data.DataLoader(
        _DecodingDataset(sources, sampling_rate), batch_size=None, num_workers=num_workers, collate_fn=_unbatched,
        worker_init_fn=one_thread_per_worker,
    )
    log_skip = UndecodableAudioLog(logger)
    for name, waveform, error in loader:
        if error is None:
            yield name, waveform
        elif skipped is not None:
            log_skip(error, name)
            skipped.append(name)
        else:
            raise AudioDecodingError(f"{error}. Fix or remove the file.")


__all__ = ["AUDIO_EXTENSIONS", "clip_name", "decoded_clips", "find_audio_files"]
