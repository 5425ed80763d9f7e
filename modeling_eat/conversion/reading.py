"""Reading official checkpoints into memory without converting anything: fairseq `.pt` files (unpickled only when
the user trusts them) and folders in the hub port's layout."""

import enum
import json
import logging
import pickle
import re
from pathlib import Path

import torch

from .errors import ConversionError, UnsafeCheckpointError
from .layouts import EMA_PREFIX, FAIRSEQ_FINETUNED, FAIRSEQ_PRETRAINING, HUB_PORT, SourceCheckpoint, SourceLayout


logger = logging.getLogger(__name__)

PICKLE_RISK = (
    "{path} is a full Python pickle (fairseq checkpoints are: their cfg holds Python objects), not a plain tensor "
    "file: it names {global_name}. "
    "Loading it runs whatever code the file names, so a malicious checkpoint can take over this machine. Only if you "
    "trust where the file comes from, convert it with --trust_pickle (torch.load(weights_only=False))."
)
CHECKPOINT_HINT = "pass an official EAT checkpoint: a fairseq .pt file or a folder in the hub port's layout"
# How torch's weights-only unpickler names an object it refuses to build ("Unsupported global: GLOBAL x.y ...").
REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+)")


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(64)


def non_checkpoint_kind(path: Path) -> str | None:
    """What a file is when it cannot be a `torch.save` file (neither a zip archive nor a pickle); None otherwise."""
    head = _head(path)
    if head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return None
    if not head:
        return "it is empty"
    if len(head) > 8 and head[8:9] == b"{":
        return "it is a safetensors file, weights without their configuration (pass the folder holding it and its " \
            "config.json)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(character.isprintable() or character in "\t\n\r" for character in text):
        return f"it is a text file (it starts with {text[:40]!r})"
    return f"it is neither a torch.save zip archive nor a pickle (it starts with the bytes {head[:8].hex(' ')})"


def unreadable(path: Path, error: Exception) -> ConversionError:
    kind = "zip archive" if _head(path).startswith(ZIP_MAGIC) else "pickle"
    # torch's first sentence says what failed; the rest is advice about torch.load.
    reason = (str(error).strip().splitlines() or [""])[0].split(". ")[0][:200]
    return ConversionError(
        f"{path} looks like a PyTorch file (a {kind}) but torch cannot read it ({type(error).__name__}: {reason}): it "
        f"is damaged (e.g. a download cut short) or not a checkpoint; {CHECKPOINT_HINT}."
    )


def load_torch_file(path: Path, trust_pickle: bool = False):
    """`torch.load` that only unpickles arbitrary objects when the user said they trust the file, and only offers
    that for files that are pickles naming such objects."""
    kind = non_checkpoint_kind(path)
    if kind is not None:
        raise ConversionError(f"{path} is not a checkpoint: {kind}; {CHECKPOINT_HINT}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = REFUSED_GLOBAL.search(str(error))
        if refused is None:
            raise unreadable(path, error) from None
        if not trust_pickle:
            raise UnsafeCheckpointError(PICKLE_RISK.format(path=path, global_name=refused.group(1))) from None
    except Exception as error:
        raise unreadable(path, error) from None
    logger.warning("Unpickling %s with weights_only=False (--trust_pickle): it may run code stored in the file.", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as error:
        raise ConversionError(
            f"{path} needs the Python module {error.name!r} to be unpickled (fairseq stores its cfg as an omegaconf "
            f"DictConfig): install it (e.g. `pip install {error.name.split('.')[0]}`) and convert again."
        ) from error
    except Exception as error:
        raise unreadable(path, error) from None


def to_plain(value):
    """Turns an omegaconf DictConfig, an argparse Namespace or an Enum (nested anywhere) into plain Python values."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # omegaconf is optional: without it a DictConfig could not have been unpickled anyway
        DictConfig = ListConfig = None
    if DictConfig is not None and isinstance(value, (DictConfig, ListConfig)):
        return to_plain(OmegaConf.to_container(value, resolve=True))
    if hasattr(value, "__dict__") and type(value).__name__ == "Namespace":
        value = vars(value)
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.name  # e.g. fairseq's PredictionMode.CLS_TOKEN
    return value


def flatten_state_dict(state_dict: dict) -> dict[str, torch.Tensor]:
    """Moves the nested `_ema` teacher dict to flat `_ema.` keys and applies the official loader's legacy renames."""
    flat = {}
    for key, value in state_dict.items():
        if key == "_ema" and isinstance(value, dict):
            flat.update({EMA_PREFIX + name: tensor for name, tensor in value.items()})
        else:
            flat[key] = value
    renamed = {}
    for key, value in flat.items():
        # The official fine-tuning loader renames the pre-2024 positional key and drops a stale buffer
        # (`models/EAT_audio_classification.py`).
        key = key.replace("fixed_positional_encoder.pos_embed", "fixed_positional_encoder.positions")
        if key.endswith("modality_encoders.IMAGE.encoder_mask"):
            continue
        renamed[key] = value
    non_tensors = sorted(key for key, value in renamed.items() if not isinstance(value, torch.Tensor))
    if non_tensors:
        raise ConversionError(f"these state-dict entries are not tensors: {', '.join(non_tensors)}")
    return renamed


# A block weight only this package's EAT names so (other transformers models call theirs `attention.self.query`).
OUR_LAYOUT_KEY = re.compile(r"^(eat\.|teacher\.encoder\.)?layers\.\d+\.attention\.qkv_proj\.weight$")
ALREADY_CONVERTED = "{path} is already in this package's layout: load it with from_pretrained instead."


def detect_layout(state_dict: dict[str, torch.Tensor], path: Path) -> SourceLayout:
    for layout in (FAIRSEQ_PRETRAINING, FAIRSEQ_FINETUNED, HUB_PORT):
        if f"{layout.encoder_prefix}local_encoder.proj.weight" in state_dict:
            return layout
    if any(OUR_LAYOUT_KEY.match(key) for key in state_dict):
        raise ConversionError(ALREADY_CONVERTED.format(path=path))
    sample = ", ".join(sorted(state_dict)[:8])
    raise ConversionError(
        f"{path} is not an EAT checkpoint this converter knows: no "
        f"`modality_encoders.IMAGE.local_encoder.proj.weight` (fairseq pre-training), "
        f"`model.modality_encoders.IMAGE.…` (fairseq fine-tuned) or `model.local_encoder.…` (hub port) key. "
        f"First keys: {sample}"
    )


def read_update_count(checkpoint: dict) -> tuple[int | None, str]:
    """The optimizer update count fairseq records (`optimizer_history[-1]["num_updates"]`), if any."""
    history = checkpoint.get("optimizer_history") or []
    if history and isinstance(history[-1], dict) and "num_updates" in history[-1]:
        return int(history[-1]["num_updates"]), "optimizer_history[-1]['num_updates'] of the checkpoint"
    extra_state = checkpoint.get("extra_state") or {}
    if isinstance(extra_state, dict) and "num_updates" in extra_state:
        return int(extra_state["num_updates"]), "extra_state['num_updates'] of the checkpoint"
    return None, "the checkpoint records no update count"


def load_folder_weights(folder: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {key: value for shard in shards for key, value in load_file(folder / shard).items()}
    if (folder / "pytorch_model.bin").is_file():
        return load_torch_file(folder / "pytorch_model.bin", trust_pickle)
    raise ConversionError(f"{folder} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def check_hub_port_config(config: dict, path: Path) -> None:
    """The hub port's config.json names its sizes `embed_dim`, `depth`...; a transformers config says what model it
    is in `model_type`, "eat" for this package's own folders."""
    if "embed_dim" in config:
        return
    model_type = config.get("model_type")
    if model_type == "eat":
        raise ConversionError(ALREADY_CONVERTED.format(path=path))
    if model_type:
        raise ConversionError(
            f"{path} holds a {model_type!r} model (model_type in its config.json), not EAT: this converter reads "
            f"official EAT checkpoints; {CHECKPOINT_HINT}."
        )
    raise ConversionError(
        f"{path}/config.json has neither the hub port's keys (embed_dim, depth, num_heads) nor a model_type: it is "
        f"not an EAT checkpoint folder; {CHECKPOINT_HINT}."
    )


def load_source_checkpoint(path: str | Path, trust_pickle: bool = False) -> SourceCheckpoint:
    """Reads a fairseq `.pt` checkpoint or a hub-port folder without converting anything yet."""
    path = Path(path)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ConversionError(f"{path} is a folder without config.json: pass a hub-port folder or a .pt file")
        hub_config = json.loads(config_file.read_text())
        check_hub_port_config(hub_config, path)
        state_dict = flatten_state_dict(load_folder_weights(path, trust_pickle))
        return SourceCheckpoint(path, detect_layout(state_dict, path), state_dict, hub_config=hub_config)
    if not path.is_file():
        raise ConversionError(f"checkpoint {path} does not exist")
    checkpoint = load_torch_file(path, trust_pickle)
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict or a state dict")
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        state_dict, cfg = checkpoint["model"], checkpoint.get("cfg") or checkpoint.get("args")
    else:
        state_dict, cfg = checkpoint, None
    state_dict = flatten_state_dict(state_dict)
    num_updates, origin = read_update_count(checkpoint)
    return SourceCheckpoint(
        path, detect_layout(state_dict, path), state_dict, fairseq_cfg=to_plain(cfg) if cfg is not None else None,
        num_updates=num_updates, num_updates_origin=origin,
    )


__all__ = ["load_source_checkpoint", "load_torch_file"]
