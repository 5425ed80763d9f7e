"""Utterance and frame-level embeddings from an EAT encoder, for sound event detection, retrieval or audio-LLM inputs.

    python -m modeling_eat.extract --model_name_or_path DIR --output feats.safetensors clips/ extra.mp3
    python -m modeling_eat.extract --model_name_or_path DIR --dataset_name DIR_OR_HUB_ID --split test \
        --format datasets --output feats/

Per clip it gives
- `utterance_embedding` `[D]`: the CLS token (the model's `pooler_output` when `layer` is the last);
- `frame_embeddings` `[T, D]`: the patch tokens averaged over the 8 frequency patches of each patch row. Row `t` is
  made of fbank frames `16t .. 16t + 15` (10 ms hop), so rows are 0.16 s apart;
- `frame_times` `[T]`: the **start** of each row in seconds, `0.16 * t` (row `t` covers the audio from `0.16 t` s to
  `0.16 t + 0.175` s: 16 hops plus the 25 ms window of its last frame).

Each clip is encoded at its own length (rounded up to whole patch rows, padding hidden from attention), not padded to
10 s. A clip longer than the model's positional table (`config.max_time_patches * 16` frames) is cut into windows of
`window_seconds` (rounded down to whole patch rows; by default 10 s, or the model's limit if shorter) that are encoded
separately: the frame rows are concatenated (time stamps stay exact because windows start on row boundaries) and the
utterance embedding is the average of the windows' CLS tokens weighted by their number of rows.
`always_window=True` windows every clip longer than `window_seconds`, matching the 10 s inputs EAT was pre-trained on.

Audio is decoded by `pretraining_data.decode_audio` (soundfile, else torchcodec's FFmpeg decoder), down-mixed and
resampled to the feature extractor's rate.
"""

import argparse
import json
import logging
import math
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .feature_extraction_eat import EATFeatureExtractor, kaldi_num_frames
from .pretraining_data import AudioDecodingError, decode_audio, load_audio_dataset


logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
FORMATS = ("safetensors", "npy", "datasets")
# Kaldi fbank hop (EAT.md §1): 100 frames per second.
FRAME_SHIFT_SECONDS = 0.01
NPY_INDEX_NAME = "index.json"
# The clip length EAT is pre-trained on.
DEFAULT_WINDOW_SECONDS = 10.0


@dataclass
class ClipFeatures:
    """Embeddings of one clip; `frame_times[t]` is the start in seconds of row `t` of `frame_embeddings`."""

    name: str
    utterance_embedding: np.ndarray
    frame_embeddings: np.ndarray
    frame_times: np.ndarray


def frame_hop_seconds(patch_size: int) -> float:
    return patch_size * FRAME_SHIFT_SECONDS


def frame_start_times(num_rows: int, patch_size: int) -> np.ndarray:
    """Start time in seconds of each patch row: row `t` begins at fbank frame `patch_size * t`."""
    return (np.arange(num_rows, dtype=np.float64) * frame_hop_seconds(patch_size)).astype(np.float32)


def window_num_frames(config, window_seconds: float | None = None) -> int:
    """Frames per window: `window_seconds` rounded down to whole patch rows; by default 10 s or the model's limit."""
    patch_size = config.patch_size
    max_frames = config.max_time_patches * patch_size
    if window_seconds is None:
        return min(max_frames, int(DEFAULT_WINDOW_SECONDS / FRAME_SHIFT_SECONDS) // patch_size * patch_size)
    num_frames = int(round(window_seconds / FRAME_SHIFT_SECONDS)) // patch_size * patch_size
    if num_frames < patch_size:
        raise ValueError(
            f"window_seconds={window_seconds} is shorter than one patch row ({frame_hop_seconds(patch_size):.2f} s): "
            "pass a longer window."
        )
    if num_frames > max_frames:
        raise ValueError(
            f"window_seconds={window_seconds} ({num_frames} frames) is longer than the model takes "
            f"(config.max_time_patches * patch_size = {max_frames} frames, {max_frames * FRAME_SHIFT_SECONDS:.2f} s): "
            "pass a shorter window, or none for the default."
        )
    return num_frames


def resolve_layer(layer: int, num_hidden_layers: int) -> int:
    """Index into `hidden_states` (0 = embedding output, i = block i, -1 = last block) as a non-negative index."""
    num_states = num_hidden_layers + 1
    if not -num_states <= layer < num_states:
        raise ValueError(
            f"layer={layer} does not exist: the model has {num_hidden_layers} blocks, so pass 0 (embeddings) to "
            f"{num_hidden_layers} (last block), or a negative index down to {-num_states}."
        )
    return layer % num_states


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class _Segment:
    clip: int
    input_values: torch.Tensor  # [frames, mel]
    frame_mask: torch.Tensor  # [frames], 1 for real fbank frames
    num_rows: int  # patch rows with at least one real frame


class _PendingClip:
    def __init__(self, name: str, num_segments: int):
        self.name = name
        self.num_segments = num_segments
        self.utterances: list[torch.Tensor] = []
        self.weights: list[int] = []
        self.frames: list[torch.Tensor] = []

    def add(self, utterance: torch.Tensor, frames: torch.Tensor) -> None:
        self.utterances.append(utterance)
        self.weights.append(frames.shape[0])
        self.frames.append(frames)

    @property
    def done(self) -> bool:
        return len(self.weights) == self.num_segments

    def finish(self, patch_size: int) -> ClipFeatures:
        weights = torch.tensor(self.weights, dtype=torch.float32)
        utterance = (torch.stack(self.utterances) * weights[:, None]).sum(0) / weights.sum()
        frames = torch.cat(self.frames).numpy()
        return ClipFeatures(self.name, utterance.numpy(), frames, frame_start_times(frames.shape[0], patch_size))


def _clip_segments(
    clip: int,
    waveform,
    feature_extractor: EATFeatureExtractor,
    config,
    device: torch.device,
    window_frames: int,
    always_window: bool,
) -> list[_Segment]:
    """Normalized fbank of one whole clip, cut into windows when it is longer than the model takes."""
    waveform = torch.as_tensor(waveform, dtype=torch.float32)
    patch_size = config.patch_size
    num_frames = kaldi_num_frames(waveform.shape[-1], feature_extractor.sampling_rate)
    padded_frames = max(1, math.ceil(num_frames / patch_size)) * patch_size
    # The fbank of the whole clip, so that windows cut from it start exactly on patch-row boundaries.
    features = feature_extractor(
        waveform.to(device),
        sampling_rate=feature_extractor.sampling_rate,
        max_length=padded_frames,
        return_attention_mask=True,
        return_tensors="pt",
    )
    input_values, frame_mask = features["input_values"][0], features["attention_mask"][0]
    max_frames = config.max_time_patches * patch_size
    segment_frames = window_frames if (always_window or padded_frames > max_frames) else padded_frames
    segments = []
    for start in range(0, padded_frames, segment_frames):
        mask = frame_mask[start : start + segment_frames]
        real_frames = int(mask.sum())
        segments.append(
            _Segment(clip, input_values[start : start + segment_frames], mask, math.ceil(real_frames / patch_size))
        )
    return segments


@torch.no_grad()
def _encode_segments(model, segments: Sequence[_Segment], layer: int, padding_value: float):
    """CLS `[B, D]` and patch rows `[B, rows, D]` (float32, CPU) of a batch of segments padded to the longest."""
    config = model.config
    longest = max(segment.input_values.shape[0] for segment in segments)
    device = segments[0].input_values.device
    input_values = torch.full((len(segments), longest, config.num_mel_bins), padding_value, device=device)
    frame_mask = torch.zeros(len(segments), longest, dtype=torch.long, device=device)
    for index, segment in enumerate(segments):
        input_values[index, : segment.input_values.shape[0]] = segment.input_values
        frame_mask[index, : segment.frame_mask.shape[0]] = segment.frame_mask
    num_rows = longest // config.patch_size
    every_row_is_real = all(segment.num_rows == num_rows for segment in segments)
    # Without padded rows the mask changes nothing, and leaving it out keeps SDPA on its fastest kernels.
    attention_mask = None if every_row_is_real else frame_mask
    outputs = model(
        input_values.to(model.dtype),
        attention_mask=attention_mask,
        output_hidden_states=layer != config.num_hidden_layers,
    )
    hidden = outputs.last_hidden_state if layer == config.num_hidden_layers else outputs.hidden_states[layer]
    hidden = hidden.float()
    rows = hidden[:, 1:].reshape(len(segments), num_rows, config.num_freq_patches, -1).mean(dim=2)
    return hidden[:, 0].cpu(), rows.cpu()


def iter_features(
    model,
    feature_extractor: EATFeatureExtractor,
    clips: Iterable[tuple[str, np.ndarray | torch.Tensor]],
    batch_size: int = 8,
    layer: int = -1,
    window_seconds: float | None = None,
    always_window: bool = False,
) -> Iterator[ClipFeatures]:
    """Streams `ClipFeatures` for `(name, waveform)` pairs, in their order; see the module docstring.

    Waveforms are mono float at the feature extractor's sampling rate. The model is an `EATModel` in eval mode; the
    fbank runs on the model's device. Up to `batch_size` windows (of one or more clips) are encoded per forward pass.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    config = model.config
    layer = resolve_layer(layer, config.num_hidden_layers)
    window_frames = window_num_frames(config, window_seconds)
    padding_value = float(feature_extractor.padding_value)
    if feature_extractor.do_normalize:
        padding_value = (padding_value - feature_extractor.mean) / (2 * feature_extractor.std)
    pending: dict[int, _PendingClip] = {}
    queue: list[_Segment] = []
    next_to_yield = 0

    def encode(segments):
        utterances, rows = _encode_segments(model, segments, layer, padding_value)
        for index, segment in enumerate(segments):
            pending[segment.clip].add(utterances[index], rows[index, : segment.num_rows])

    def finished():
        nonlocal next_to_yield
        while next_to_yield in pending and pending[next_to_yield].done:
            yield pending.pop(next_to_yield).finish(config.patch_size)
            next_to_yield += 1

    for clip_number, (name, waveform) in enumerate(clips):
        segments = _clip_segments(
            clip_number, waveform, feature_extractor, config, model.device, window_frames, always_window
        )
        pending[clip_number] = _PendingClip(name, len(segments))
        queue.extend(segments)
        while len(queue) >= batch_size:
            encode(queue[:batch_size])
            queue = queue[batch_size:]
            yield from finished()
    if queue:
        encode(queue)
    yield from finished()


def extract_features(
    model,
    feature_extractor: EATFeatureExtractor,
    waveforms: Sequence[np.ndarray | torch.Tensor],
    names: Sequence[str] | None = None,
    batch_size: int = 8,
    layer: int = -1,
    window_seconds: float | None = None,
    always_window: bool = False,
) -> list[ClipFeatures]:
    """`ClipFeatures` of in-memory waveforms (named `0, 1, ...` unless `names` are given); see `iter_features`."""
    if names is None:
        names = [str(index) for index in range(len(waveforms))]
    if len(names) != len(waveforms):
        raise ValueError(f"got {len(names)} names for {len(waveforms)} waveforms")
    return list(
        iter_features(model, feature_extractor, zip(names, waveforms), batch_size, layer, window_seconds, always_window)
    )


# ----------------------------------------------------------------------------------------------------------- inputs


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
            raise FileNotFoundError(f"{path} is neither a file nor a folder: check the input path")
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
    sources: Sequence, sampling_rate: int, num_workers: int = 0, skip_undecodable: bool = False
) -> Iterator[tuple[str, np.ndarray]]:
    """`(name, waveform)` of paths or `Audio(decode=False)` values, in order; a failure raises or is logged."""
    loader = torch.utils.data.DataLoader(
        _DecodingDataset(sources, sampling_rate), batch_size=None, num_workers=num_workers, collate_fn=_unbatched
    )
    for name, waveform, error in loader:
        if error is None:
            yield name, waveform
        elif skip_undecodable:
            logger.warning(f"skipping undecodable audio: {error}")
        else:
            raise AudioDecodingError(f"{error}. Fix or remove the file, or pass --skip_undecodable.")


# ---------------------------------------------------------------------------------------------------------- outputs


def save_features(features: Sequence[ClipFeatures], output: str | Path, format: str, metadata: dict | None = None):
    """Writes `features` as one safetensors file, a folder of .npy files, or a `datasets` folder (`save_to_disk`).

    - safetensors: `utterance_embeddings` `[N, D]`, `frame_embeddings.{i}` `[T_i, D]`, `frame_times.{i}` `[T_i]`;
      the header metadata holds `files` (JSON list, clip `i` is `files[i]`) and `metadata` (JSON).
    - npy: `utterance_embeddings.npy` `[N, D]`, `frame_embeddings/{i:06d}.npy`, `frame_times/{i:06d}.npy` and
      `index.json` (`files`, `metadata`).
    - datasets: columns `file`, `utterance_embedding`, `frame_embeddings`, `frame_times`; the metadata as JSON in
      the data set's description.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: choose one of {FORMATS}")
    if not features:
        raise ValueError("no clip to save: the inputs held no decodable audio")
    output = Path(output)
    files = [clip.name for clip in features]
    metadata = dict(metadata or {})
    utterances = np.stack([clip.utterance_embedding for clip in features]).astype(np.float32)
    if format == "safetensors":
        from safetensors.numpy import save_file

        tensors = {"utterance_embeddings": utterances}
        for index, clip in enumerate(features):
            tensors[f"frame_embeddings.{index}"] = np.ascontiguousarray(clip.frame_embeddings, dtype=np.float32)
            tensors[f"frame_times.{index}"] = np.ascontiguousarray(clip.frame_times, dtype=np.float32)
        output.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(output), metadata={"files": json.dumps(files), "metadata": json.dumps(metadata)})
    elif format == "npy":
        (output / "frame_embeddings").mkdir(parents=True, exist_ok=True)
        (output / "frame_times").mkdir(parents=True, exist_ok=True)
        np.save(output / "utterance_embeddings.npy", utterances)
        for index, clip in enumerate(features):
            np.save(output / "frame_embeddings" / f"{index:06d}.npy", clip.frame_embeddings.astype(np.float32))
            np.save(output / "frame_times" / f"{index:06d}.npy", clip.frame_times.astype(np.float32))
        (output / NPY_INDEX_NAME).write_text(json.dumps({"files": files, "metadata": metadata}, indent=1))
    else:
        from datasets import Array2D, Dataset, DatasetInfo, Features, List, Value

        hidden_size = utterances.shape[1]
        columns = Features(
            {
                "file": Value("string"),
                "utterance_embedding": List(Value("float32")),
                "frame_embeddings": Array2D(shape=(None, hidden_size), dtype="float32"),
                "frame_times": List(Value("float32")),
            }
        )
        dataset = Dataset.from_dict(
            {
                "file": files,
                "utterance_embedding": list(utterances),
                "frame_embeddings": [clip.frame_embeddings.astype(np.float32) for clip in features],
                "frame_times": [clip.frame_times.astype(np.float32) for clip in features],
            },
            features=columns,
            info=DatasetInfo(description=json.dumps(metadata), features=columns),
        )
        dataset.save_to_disk(str(output))
    return output


def detect_format(path: str | Path) -> str:
    path = Path(path)
    if path.is_file():
        return "safetensors"
    if (path / NPY_INDEX_NAME).is_file():
        return "npy"
    if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
        return "datasets"
    raise ValueError(f"{path} is not a features file or folder written by modeling_eat.extract")


def remove_features(path: str | Path) -> None:
    """Deletes features written by `save_features`; refuses anything else, so `--overwrite` cannot delete data."""
    path = Path(path)
    detect_format(path)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def load_features(path: str | Path) -> tuple[list[ClipFeatures], dict]:
    """Reads back what `save_features` wrote, in any format: the clips and the metadata."""
    path = Path(path)
    format = detect_format(path)
    if format == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            header = handle.metadata() or {}
            files = json.loads(header["files"])
            utterances = handle.get_tensor("utterance_embeddings")
            clips = [
                ClipFeatures(
                    name,
                    utterances[index],
                    handle.get_tensor(f"frame_embeddings.{index}"),
                    handle.get_tensor(f"frame_times.{index}"),
                )
                for index, name in enumerate(files)
            ]
        return clips, json.loads(header.get("metadata", "{}"))
    if format == "npy":
        index_data = json.loads((path / NPY_INDEX_NAME).read_text())
        utterances = np.load(path / "utterance_embeddings.npy")
        clips = [
            ClipFeatures(
                name,
                utterances[index],
                np.load(path / "frame_embeddings" / f"{index:06d}.npy"),
                np.load(path / "frame_times" / f"{index:06d}.npy"),
            )
            for index, name in enumerate(index_data["files"])
        ]
        return clips, index_data["metadata"]
    from datasets import load_from_disk

    dataset = load_from_disk(str(path)).with_format("numpy")
    clips = [
        ClipFeatures(row["file"], row["utterance_embedding"], row["frame_embeddings"], row["frame_times"])
        for row in dataset
    ]
    description = dataset.info.description
    return clips, json.loads(description) if description else {}


# ------------------------------------------------------------------------------------------------------------ model


def load_encoder(model_name_or_path: str, device: str | torch.device | None = "auto", dtype: str = "float32"):
    """The `EATModel` encoder of a saved EAT folder (an encoder, classifier or pre-training folder), in eval mode."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_name_or_path, dtype=getattr(torch, dtype))
    return model.to(resolve_device(device)).eval()


def load_feature_extractor(model_name_or_path: str, feature_extractor_name: str | None = None) -> EATFeatureExtractor:
    """`feature_extractor_name` (a preset or a folder), else the model folder's extractor, else the AudioSet preset."""
    from .pretraining_data import load_feature_extractor as load_named

    if feature_extractor_name is not None:
        return load_named(feature_extractor_name)
    if (Path(model_name_or_path) / "preprocessor_config.json").is_file():
        return EATFeatureExtractor.from_pretrained(model_name_or_path)
    logger.warning(
        f"{model_name_or_path} has no preprocessor_config.json: using the AudioSet feature extractor statistics "
        "(pass --feature_extractor_name to choose)."
    )
    return load_named(None)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with `linear_probe`: model, extractor, batching, device, layer, windows."""
    parser.add_argument("--model_name_or_path", required=True, help="saved EAT folder or Hub id")
    parser.add_argument("--feature_extractor_name", default=None, help="preset (audioset/esc50/spc2) or folder")
    parser.add_argument("--batch_size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--layer", type=int, default=-1, help="hidden state: 0 = embeddings, i = block i, -1 = last")
    parser.add_argument(
        "--window_seconds", type=float, default=None, help="window for long clips (default 10 s or the model's limit)"
    )
    parser.add_argument("--always_window", action="store_true", help="window every clip longer than the window")
    parser.add_argument("--num_workers", type=int, default=0, help="audio decoding processes")
    parser.add_argument("--skip_undecodable", action="store_true", help="log and skip files that fail to decode")


def feature_metadata(args, model) -> dict:
    return {
        "model_name_or_path": str(args.model_name_or_path),
        "layer": resolve_layer(args.layer, model.config.num_hidden_layers),
        "hidden_size": model.config.hidden_size,
        "frame_hop_seconds": frame_hop_seconds(model.config.patch_size),
        "frame_times": "start",
        "window_seconds": window_num_frames(model.config, args.window_seconds) * FRAME_SHIFT_SECONDS,
        "always_window": args.always_window,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", help="audio files and folders (searched for .wav/.flac/.mp3/.ogg)")
    add_model_arguments(parser)
    parser.add_argument("--dataset_name", default=None, help="local audiofolder or Hub data set instead of inputs")
    parser.add_argument("--dataset_config_name", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--audio_column_name", default="audio")
    parser.add_argument("--max_samples", type=int, default=None, help="only the first N clips")
    parser.add_argument("--output", required=True, help=".safetensors file, or a folder for npy/datasets")
    parser.add_argument("--format", default="safetensors", choices=FORMATS)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if bool(args.inputs) == bool(args.dataset_name):
        parser.error("pass audio files/folders or --dataset_name (exactly one of the two)")
    if Path(args.output).exists() and not args.overwrite:
        parser.error(f"{args.output} exists: pass --overwrite or another --output")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    from tqdm.auto import tqdm

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.overwrite and Path(args.output).exists():
        remove_features(args.output)
    model = load_encoder(args.model_name_or_path, args.device, args.dtype)
    feature_extractor = load_feature_extractor(args.model_name_or_path, args.feature_extractor_name)
    if args.dataset_name:
        dataset = load_audio_dataset(
            args.dataset_name, args.dataset_config_name, args.split, args.audio_column_name,
            max_samples=args.max_samples,
        )
        sources = dataset[args.audio_column_name]
    else:
        sources = [str(path) for path in find_audio_files(args.inputs)][: args.max_samples]
    clips = decoded_clips(sources, feature_extractor.sampling_rate, args.num_workers, args.skip_undecodable)
    features = list(
        tqdm(
            iter_features(
                model, feature_extractor, clips, args.batch_size, args.layer, args.window_seconds, args.always_window
            ),
            total=len(sources),
            desc="extracting",
            unit="clip",
        )
    )
    output = save_features(features, args.output, args.format, feature_metadata(args, model))
    logger.info(
        f"wrote {len(features)} clips ({args.format}, hidden size {model.config.hidden_size}, frame rows every "
        f"{frame_hop_seconds(model.config.patch_size):.2f} s) to {output} on {model.device}"
    )
    return output


if __name__ == "__main__":
    main()
