"""Extracted features on disk: one safetensors file, a folder of .npy files, or a `datasets` folder, written and
read back alike. A new output is written beside its destination and moved into place once complete, and only
replaces features an extraction wrote: never an input file, a text file or someone's folder."""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..outputs import move_into_place, remove_path, staging_path
from .features import ClipFeatures


FORMATS = ("safetensors", "npy", "datasets")
NPY_INDEX_NAME = "index.json"


def save_features(features: Sequence[ClipFeatures], output: str | Path, format: str, metadata: dict | None = None):
    """Writes `features` as one safetensors file, a folder of .npy files, or a `datasets` folder (`save_to_disk`).

    - safetensors: `utterance_embeddings` `[N, D]`, `frame_embeddings.{i}` `[T_i, D]`, `frame_times.{i}` `[T_i]`;
      the header metadata holds `files` (JSON list, clip `i` is `files[i]`) and `metadata` (JSON).
    - npy: `utterance_embeddings.npy` `[N, D]`, `frame_embeddings/{i:06d}.npy`, `frame_times/{i:06d}.npy` and
      `index.json` (`files`, `metadata`).
    - datasets: columns `file`, `utterance_embedding`, `frame_embeddings`, `frame_times`; the metadata as JSON in
      the data set's description.

    The output is written beside `output` and moved into place once complete; an existing `output` is replaced
    only if it holds features written here (`is_features_output`), never otherwise.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: choose one of {FORMATS}")
    if not features:
        raise ValueError("no clip to save: the inputs held no decodable audio")
    final = Path(output)
    if (final.exists() or final.is_symlink()) and not is_features_output(final):
        raise ValueError(f"{final} exists and is not features written by modeling_eat.extract: refusing to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    output = staging_path(final)
    remove_path(output)
    try:
        _write_features(features, output, format, metadata)
        move_into_place(output, final)
    except BaseException:
        remove_path(output)
        raise
    return final


def _write_features(features: Sequence[ClipFeatures], output: Path, format: str, metadata: dict | None) -> None:
    files = [clip.name for clip in features]
    metadata = dict(metadata or {})
    utterances = np.stack([clip.utterance_embedding for clip in features]).astype(np.float32)
    if format == "safetensors":
        from safetensors.numpy import save_file

        tensors = {"utterance_embeddings": utterances}
        for index, clip in enumerate(features):
            tensors[f"frame_embeddings.{index}"] = np.ascontiguousarray(clip.frame_embeddings, dtype=np.float32)
            tensors[f"frame_times.{index}"] = np.ascontiguousarray(clip.frame_times, dtype=np.float32)
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


def partial_output_path(output: str | Path) -> Path:
    """Where the clips finished before a failure go: `feats.partial.safetensors` beside `feats.safetensors`,
    `feats.partial` beside a `feats` folder."""
    output = Path(output)
    if output.suffix:
        return output.with_name(f"{output.stem}.partial{output.suffix}")
    return output.with_name(f"{output.name}.partial")


def _stored_metadata(path: Path) -> tuple[str, dict] | None:
    """The format and metadata of features `save_features` wrote at `path`, or None for anything else."""
    try:
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as handle:
                header = handle.metadata() or {}
            return ("safetensors", json.loads(header["metadata"])) if "files" in header else None
        if (path / NPY_INDEX_NAME).is_file():
            return "npy", json.loads((path / NPY_INDEX_NAME).read_text())["metadata"]
        if (path / "dataset_info.json").is_file():
            info = json.loads((path / "dataset_info.json").read_text())
            return "datasets", json.loads(info.get("description") or "null")
    except Exception:  # unreadable, or another kind of file (safetensors raises its own error type for those)
        return None
    return None


def is_features_output(path: str | Path) -> bool:
    """Whether `path` holds features `save_features` wrote (their metadata names the frame hop), the only thing an
    extraction may replace."""
    stored = _stored_metadata(Path(path))
    return stored is not None and isinstance(stored[1], dict) and "frame_hop_seconds" in stored[1]


def detect_format(path: str | Path) -> str:
    stored = _stored_metadata(Path(path))
    if stored is None:
        raise ValueError(f"{path} is not a features file or folder written by modeling_eat.extract")
    return stored[0]


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


__all__ = ["FORMATS", "detect_format", "is_features_output", "load_features", "partial_output_path", "save_features"]
