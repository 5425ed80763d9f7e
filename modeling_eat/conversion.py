"""Conversion of official EAT checkpoints into this package's models.

Three source layouts are read (EAT.md §5, §6):

- a fairseq pre-training checkpoint (`{"cfg": ..., "model": state_dict}`; encoder under `modality_encoders.IMAGE.`,
  Transformer blocks under `blocks.`, the CNN decoder under `modality_encoders.IMAGE.decoder.`, and the EMA teacher as a
  nested dict `model["_ema"]`);
- a fairseq fine-tuned checkpoint (the same backbone under `model.`, plus `fc_norm.*` and `head.*`);
- a folder in the layout of the hub's remote-code port (`config.json` with `embed_dim`/`depth`/..., weights `model.*`).

Nothing is written unless the converted model passes two checks: every source weight lands on exactly one target weight
of the same shape (all differences are listed at once), and a functional forward written here from the math of EAT.md
§2 over the *original* key names agrees with the converted model within `TOLERANCE`. This module is not shipped to the
hub; the shipped files never import it.
"""

import enum
import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError

from .configuration_eat import EATConfig
from .feature_extraction_eat import EATFeatureExtractor
from .modeling_eat import EATForAudioClassification, EATForPreTraining, EATModel, sincos_position_table


logger = logging.getLogger(__name__)

TOLERANCE = 1e-4
TARGETS = ("encoder", "classification", "pretraining")
TARGET_CLASSES = {"encoder": EATModel, "classification": EATForAudioClassification, "pretraining": EATForPreTraining}
# The files a converted folder needs to load with `trust_remote_code=True` where this package is not installed.
CODE_FILES = ("configuration_eat.py", "modeling_eat.py", "masking_eat.py", "feature_extraction_eat.py")
# fairseq keeps the teacher as a nested dict; flattened under this prefix so every weight has one flat name.
EMA_PREFIX = "_ema."
# The official LayerNorm of the decoder and of the teacher targets (fairseq / F.layer_norm default).
DECODER_NORM_EPS = 1e-5
HUB_PORT_FC_NORM_EPS = 1e-5

PICKLE_RISK = (
    "{path} is a full Python pickle (fairseq checkpoints are: their cfg holds Python objects), not a plain tensor "
    "file. "
    "Loading it runs whatever code the file names, so a malicious checkpoint can take over this machine. Only if you "
    "trust where the file comes from, convert it with --trust_pickle (torch.load(weights_only=False)). "
    "torch's message: {error}"
)


class ConversionError(ValueError):
    """The checkpoint cannot be converted faithfully; the message names every problem found."""


class UnsafeCheckpointError(ConversionError):
    """The checkpoint needs arbitrary unpickling and the user did not say they trust it."""


@dataclass(frozen=True)
class SourceLayout:
    """Where one encoder's weights live in a source state dict."""

    description: str
    encoder_prefix: str
    blocks_prefix: str
    context_norm: str
    head_prefix: str | None = None

    @property
    def positions_key(self) -> str:
        return f"{self.encoder_prefix}fixed_positional_encoder.positions"

    @property
    def decoder_prefix(self) -> str:
        return f"{self.encoder_prefix}decoder."

    def teacher(self) -> "SourceLayout":
        return SourceLayout(
            f"{self.description} (EMA teacher)",
            EMA_PREFIX + self.encoder_prefix,
            EMA_PREFIX + self.blocks_prefix,
            self.context_norm,
        )


FAIRSEQ_PRETRAINING = SourceLayout(
    "fairseq pre-training checkpoint", "modality_encoders.IMAGE.", "blocks.", "context_encoder.norm"
)
FAIRSEQ_FINETUNED = SourceLayout(
    "fairseq fine-tuned checkpoint", "model.modality_encoders.IMAGE.", "model.blocks.", "context_encoder.norm", ""
)
HUB_PORT = SourceLayout("hub remote-code port folder", "model.", "model.blocks.", "pre_norm", "model.")

# Official block parameter names → ours (EAT.md §2.4: norm1 follows attention, norm2 the MLP; post-LN).
BLOCK_PARAMETERS = {
    "norm1": "attention_norm",
    "attn.qkv": "attention.qkv_proj",
    "attn.proj": "attention.o_proj",
    "norm2": "output_norm",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def encoder_rules(layout: SourceLayout, target_prefix: str) -> list[tuple[re.Pattern, str]]:
    """Renaming rules from one official encoder to an `EATModel` whose weights start with `target_prefix`."""
    encoder, blocks = re.escape(layout.encoder_prefix), re.escape(layout.blocks_prefix)
    rules = [
        (rf"{encoder}local_encoder\.proj\.(weight|bias)", "embeddings.patch_embeddings.projection.{0}"),
        (rf"{encoder}extra_tokens", "embeddings.cls_token"),
        (rf"{encoder}{re.escape(layout.context_norm)}\.(weight|bias)", "embeddings.layer_norm.{0}"),
    ]
    for official, ours in BLOCK_PARAMETERS.items():
        rules.append((rf"{blocks}(\d+)\.{re.escape(official)}\.(weight|bias)", f"layers.{{0}}.{ours}.{{1}}"))
    return [(re.compile(pattern), target_prefix + template) for pattern, template in rules]


def decoder_rules(layout: SourceLayout) -> list[tuple[re.Pattern, str]]:
    decoder = re.escape(layout.decoder_prefix)
    return [
        # In each official decoder block, index 0 is the convolution; its LayerNorm has no parameters.
        (re.compile(rf"{decoder}blocks\.(\d+)\.0\.(weight|bias)"), "decoder.layers.{0}.conv.{1}"),
        (re.compile(rf"{decoder}proj\.(weight|bias)"), "decoder.projection.{0}"),
    ]


def head_rules(layout: SourceLayout) -> list[tuple[re.Pattern, str]]:
    head = re.escape(layout.head_prefix)
    return [
        (re.compile(rf"{head}fc_norm\.(weight|bias)"), "fc_norm.{0}"),
        (re.compile(rf"{head}head\.(weight|bias)"), "classifier.{0}"),
    ]


@dataclass
class SourceCheckpoint:
    """A checkpoint read into memory: flat state dict (teacher under `_ema.`), its layout and configuration."""

    path: Path
    layout: SourceLayout
    state_dict: dict[str, torch.Tensor]
    fairseq_cfg: dict | None = None
    hub_config: dict | None = None
    num_updates: int | None = None
    num_updates_origin: str = ""

    @property
    def has_teacher(self) -> bool:
        return any(key.startswith(EMA_PREFIX) for key in self.state_dict)

    @property
    def has_decoder(self) -> bool:
        return any(key.startswith(self.layout.decoder_prefix) for key in self.state_dict)

    @property
    def has_head(self) -> bool:
        return self.layout.head_prefix is not None and f"{self.layout.head_prefix}head.weight" in self.state_dict


@dataclass
class ConversionReport:
    """What the converter did and measured; `str()` gives the text the CLI prints."""

    source: str
    layout: str
    target: str
    weights: str
    max_abs_differences: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    output_dir: str | None = None
    repo_url: str | None = None

    def __str__(self) -> str:
        lines = [
            f"source:  {self.source} ({self.layout})",
            f"target:  {self.target} from the {self.weights} weights",
            f"verification against an independent forward over the original weights (tolerance {TOLERANCE:g}):",
        ]
        lines += [f"  {name}: max |difference| = {value:.3g}" for name, value in self.max_abs_differences.items()]
        lines += [f"note: {note}" for note in self.notes]
        if self.output_dir:
            lines.append(f"written to {self.output_dir}")
        if self.repo_url:
            lines.append(f"pushed to {self.repo_url}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# Reading checkpoints


def load_torch_file(path: Path, trust_pickle: bool = False):
    """`torch.load` that only unpickles arbitrary objects when the user said they trust the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not trust_pickle:
            raise UnsafeCheckpointError(PICKLE_RISK.format(path=path, error=str(error).splitlines()[0])) from None
    logger.warning("Unpickling %s with weights_only=False (--trust_pickle): it may run code stored in the file.", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as error:
        raise ConversionError(
            f"{path} needs the Python module {error.name!r} to be unpickled (fairseq stores its cfg as an omegaconf "
            f"DictConfig): install it (e.g. `pip install {error.name.split('.')[0]}`) and convert again."
        ) from error


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
        # The official fine-tuning loader renames the pre-2024 positional key and drops a stale buffer (EAT.md §5.3).
        key = key.replace("fixed_positional_encoder.pos_embed", "fixed_positional_encoder.positions")
        if key.endswith("modality_encoders.IMAGE.encoder_mask"):
            continue
        renamed[key] = value
    non_tensors = sorted(key for key, value in renamed.items() if not isinstance(value, torch.Tensor))
    if non_tensors:
        raise ConversionError(f"these state-dict entries are not tensors: {', '.join(non_tensors)}")
    return renamed


def detect_layout(state_dict: dict[str, torch.Tensor], path: Path) -> SourceLayout:
    for layout in (FAIRSEQ_PRETRAINING, FAIRSEQ_FINETUNED, HUB_PORT):
        if f"{layout.encoder_prefix}local_encoder.proj.weight" in state_dict:
            return layout
    if any(key.split(".", 1)[-1].startswith("embeddings.patch_embeddings") or key.startswith("embeddings.")
           for key in state_dict):
        raise ConversionError(f"{path} is already in this package's layout: load it with from_pretrained instead.")
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


def load_source_checkpoint(path: str | Path, trust_pickle: bool = False) -> SourceCheckpoint:
    """Reads a fairseq `.pt` checkpoint or a hub-port folder without converting anything yet."""
    path = Path(path)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ConversionError(f"{path} is a folder without config.json: pass a hub-port folder or a .pt file")
        hub_config = json.loads(config_file.read_text())
        if "hidden_size" in hub_config and "embed_dim" not in hub_config:
            raise ConversionError(f"{path} is already in this package's layout: load it with from_pretrained instead.")
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


# ----------------------------------------------------------------------------------------------------------------------
# Configuration


def dims_from_weights(source: SourceCheckpoint) -> dict:
    """Sizes readable from the weights alone; the cfg (when there is one) must agree, the shape check makes sure."""
    layout, weights = source.layout, source.state_dict
    patch = weights[f"{layout.encoder_prefix}local_encoder.proj.weight"]
    hidden_size = patch.shape[0]
    block_indices = {
        int(match.group(1))
        for key in weights
        if (match := re.match(rf"{re.escape(layout.blocks_prefix)}(\d+)\.", key))
    }
    dims = {"hidden_size": hidden_size, "patch_size": patch.shape[-1], "num_hidden_layers": len(block_indices)}
    fc1 = weights.get(f"{layout.blocks_prefix}0.mlp.fc1.weight")
    if fc1 is not None:
        dims["intermediate_size"] = fc1.shape[0]
    dims["qkv_bias"] = f"{layout.blocks_prefix}0.attn.qkv.bias" in weights
    decoder_conv = re.compile(rf"{re.escape(layout.decoder_prefix)}blocks\.\d+\.0\.weight")
    decoder_convs = sorted(key for key in weights if decoder_conv.fullmatch(key))
    if decoder_convs:
        conv = weights[decoder_convs[0]]
        dims.update(
            decoder_num_layers=len(decoder_convs),
            decoder_hidden_size=conv.shape[0],
            decoder_kernel_size=conv.shape[-1],
            decoder_groups=hidden_size // conv.shape[1],
        )
    if source.has_head:
        dims["num_labels"] = weights[f"{layout.head_prefix}head.weight"].shape[0]
        dims["use_fc_norm"] = f"{layout.head_prefix}fc_norm.weight" in weights
    return dims


def renamed(settings: dict, renames: dict[str, str]) -> dict:
    """`{our name: value}` for the official settings present (and not None) in `settings`."""
    return {ours: settings[theirs] for theirs, ours in renames.items() if settings.get(theirs) is not None}


def require(condition: bool, message: str):
    if not condition:
        raise ConversionError(message)


def settings_from_fairseq_cfg(cfg: dict, target: str) -> dict:
    """EATConfig fields from a fairseq cfg; refuses settings whose math this package does not implement."""
    model_cfg = cfg.get("model", cfg) or {}
    architecture = model_cfg
    settings = {}
    if isinstance(model_cfg.get("pretrained_model_args"), dict):  # fine-tuned: the backbone's cfg is embedded
        architecture = model_cfg["pretrained_model_args"].get("model", model_cfg["pretrained_model_args"])
        mode = str(model_cfg.get("prediction_mode", "CLS_TOKEN")).split(".")[-1]
        pooling = {"CLS_TOKEN": "cls", "MEAN_POOLING": "mean"}
        require(mode in pooling, f"prediction_mode {mode} is not supported: only CLS_TOKEN and MEAN_POOLING are")
        settings["classifier_pooling"] = pooling[mode]
        if "use_fc_norm" in model_cfg:
            settings["use_fc_norm"] = bool(model_cfg["use_fc_norm"])
    image = (architecture.get("modalities") or {}).get("image") or {}
    decoder = image.get("decoder") or {}

    require(not architecture.get("layer_norm_first", False),
            "layer_norm_first=True (pre-LN blocks) is not EAT's architecture; this package implements post-LN blocks")
    require(architecture.get("norm_affine", True), "norm_affine=False is not supported (EAT's LayerNorms are affine)")
    require(image.get("in_chans", 1) == 1, f"in_chans={image.get('in_chans')}: EAT takes one-channel spectrograms")
    require(image.get("embed_dim", architecture.get("embed_dim")) == architecture.get("embed_dim"),
            "modalities.image.embed_dim differs from embed_dim: such checkpoints project patches with an extra linear "
            "layer this package does not have")
    if target == "pretraining":
        # The teacher's targets are only reproduced for EAT's recipe (EAT.md §3).
        for name, expected in {"instance_norm_target_layer": True, "layer_norm_targets": True,
                               "end_of_block_targets": False, "layer_norm_target_layer": False,
                               "batch_norm_target_layer": False, "instance_norm_targets": False}.items():
            require(architecture.get(name, expected) == expected,
                    f"{name}={architecture.get(name)}: EATForPreTraining builds targets with {name}={expected}")
        for name, expected in {"decoder_residual": True, "add_positions_masked": False, "add_positions_all": False,
                               "projection_layers": 1}.items():
            require(decoder.get(name, expected) == expected,
                    f"decoder {name}={decoder.get(name)}: EATCNNDecoder implements {name}={expected}")

    renames = {
        "embed_dim": "hidden_size", "depth": "num_hidden_layers", "num_heads": "num_attention_heads",
        "norm_eps": "layer_norm_eps", "clone_batch": "clone_batch", "ema_decay": "ema_decay",
        "ema_end_decay": "ema_end_decay", "ema_anneal_end_step": "ema_anneal_end_step",
        "average_top_k_layers": "average_top_k_layers", "cls_loss": "utterance_loss_weight",
    }
    settings.update(renamed(architecture, renames))
    if architecture.get("mlp_ratio") is not None and architecture.get("embed_dim") is not None:
        settings["intermediate_size"] = int(architecture["embed_dim"] * architecture["mlp_ratio"])
    image_renames = {
        "patch_size": "patch_size", "mask_prob": "mask_ratio", "mask_prob_adjust": "mask_prob_adjust",
        "mask_length": "mask_block_size", "mask_noise_std": "mask_noise_std", "max_length": "max_time_patches",
    }
    settings.update(renamed(image, image_renames))
    if "inverse_mask" in image:
        settings["mask_strategy"] = "inverse_block" if image["inverse_mask"] else "random"
    decoder_renames = {
        "decoder_dim": "decoder_hidden_size", "decoder_groups": "decoder_groups",
        "decoder_kernel": "decoder_kernel_size", "decoder_layers": "decoder_num_layers",
    }
    settings.update(renamed(decoder, decoder_renames))
    # The task's target_length is what the model was trained (or fine-tuned) on; the model cfg keeps the
    # pre-training one.
    target_length = (cfg.get("task") or {}).get("target_length") or image.get("target_length")
    if target_length:
        settings["max_length"] = int(target_length)
    return settings


def settings_from_hub_config(hub_config: dict) -> dict:
    require(not hub_config.get("layer_norm_first", False),
            "the hub config has layer_norm_first=True: not EAT's post-LN")
    require(hub_config.get("in_chans", 1) == 1, "the hub config has in_chans != 1: EAT takes one-channel spectrograms")
    require(hub_config.get("patch_size", 16) == hub_config.get("stride", hub_config.get("patch_size", 16)),
            "the hub config has stride != patch_size: EAT's patches do not overlap")
    renames = {
        "embed_dim": "hidden_size", "depth": "num_hidden_layers", "num_heads": "num_attention_heads",
        "norm_eps": "layer_norm_eps", "patch_size": "patch_size", "mel_bins": "num_mel_bins",
        "max_length": "max_time_patches", "qkv_bias": "qkv_bias",
    }
    settings = renamed(hub_config, renames)
    if hub_config.get("mlp_ratio") is not None and hub_config.get("embed_dim") is not None:
        settings["intermediate_size"] = int(hub_config["embed_dim"] * hub_config["mlp_ratio"])
    if hub_config.get("img_size"):
        settings["max_length"] = int(hub_config["img_size"][0])
    return settings


def audioset_id2label() -> dict[int, str]:
    """The 527 AudioSet class names, in the output order of AudioSet heads (shipped as package data)."""
    data = json.loads(resources.files("modeling_eat").joinpath("audioset_labels.json").read_text(encoding="utf-8"))
    return dict(enumerate(data["labels"]))


def read_id2label(id2label: str | Path | dict | list, num_labels: int) -> dict[int, str]:
    """Accepts a JSON file (or object) holding a `{"0": "name", ...}` map or a list of names."""
    if isinstance(id2label, (str, Path)):
        id2label = json.loads(Path(id2label).read_text(encoding="utf-8"))
    if isinstance(id2label, list):
        id2label = dict(enumerate(id2label))
    if not isinstance(id2label, dict):
        raise ConversionError("--id2label must hold a JSON object {\"0\": \"name\", ...} or a list of names")
    labels = {int(index): str(name) for index, name in id2label.items()}
    require(sorted(labels) == list(range(num_labels)),
            f"--id2label names {len(labels)} classes (indices {sorted(labels)[:5]}...), but the head has {num_labels} "
            f"outputs: give exactly the indices 0..{num_labels - 1}")
    return labels


def config_for(source: SourceCheckpoint, target: str, id2label=None) -> EATConfig:
    """The EATConfig of the converted model: the checkpoint's cfg, then what the weights show, then our defaults."""
    settings = {}
    if source.fairseq_cfg:
        settings.update(settings_from_fairseq_cfg(source.fairseq_cfg, target))
    if source.hub_config:
        settings.update(settings_from_hub_config(source.hub_config))
    weight_dims = dims_from_weights(source)
    for name, value in weight_dims.items():
        settings.setdefault(name, value)
    if "num_attention_heads" not in settings:
        # Head count is not visible in the weights: the official sizes all use 64-wide heads.
        settings["num_attention_heads"] = max(1, settings["hidden_size"] // 64)
    # Without a cfg (hub port, key manifests), EAT's recipe: targets from all blocks, a decoder as wide as the encoder.
    settings.setdefault("average_top_k_layers", settings["num_hidden_layers"])
    settings.setdefault("decoder_hidden_size", settings["hidden_size"])
    num_labels = settings.pop("num_labels", None)
    if target == "classification":
        num_labels = weight_dims["num_labels"]
        if id2label is not None:
            settings["id2label"] = read_id2label(id2label, num_labels)
        elif num_labels == 527:
            settings["id2label"] = audioset_id2label()
            settings["problem_type"] = "multi_label_classification"
        else:
            settings["num_labels"] = num_labels
        if "id2label" in settings:
            settings["label2id"] = {name: index for index, name in settings["id2label"].items()}
    elif id2label is not None:
        raise ConversionError("--id2label applies to classification targets only (a checkpoint with a head)")
    try:
        return EATConfig(**settings)
    except (StrictDataclassError, TypeError, ValueError) as error:
        raise ConversionError(f"{source.path}: its settings make no valid EATConfig: {error}") from error


# ----------------------------------------------------------------------------------------------------------------------
# Weights


def dropping(rules: list[tuple[re.Pattern, str]], reason: str) -> list[tuple[re.Pattern, None, str]]:
    """The same source keys, recognised but left out of the conversion on purpose (and reported)."""
    return [(pattern, None, reason) for pattern, _ in rules]


def conversion_rules(source: SourceCheckpoint, target: str, use_ema: bool) -> list[tuple[re.Pattern, str | None, str]]:
    """`(source key pattern, our key template or None to leave it out, why)` for one conversion.

    Every source key must match one rule: a key no rule knows is refused, so a checkpoint from a different
    architecture cannot convert silently with parts missing.
    """
    layout = source.layout
    teacher = layout.teacher()
    if target == "pretraining":
        rules = [(pattern, template, "") for pattern, template in
                 encoder_rules(layout, "eat.") + encoder_rules(teacher, "teacher.encoder.") + decoder_rules(layout)]
        return rules + dropping(decoder_rules(teacher), "a decoder inside the EMA teacher (the teacher never decodes)")
    student_prefix = "" if target == "encoder" else "eat."
    if use_ema:
        rules = [(pattern, template, "") for pattern, template in encoder_rules(teacher, student_prefix)]
        rules += dropping(encoder_rules(layout, ""), "the student (--use_ema takes the EMA teacher)")
    else:
        rules = [(pattern, template, "") for pattern, template in encoder_rules(layout, student_prefix)]
        rules += dropping(encoder_rules(teacher, ""), "the EMA teacher (--target pretraining keeps it)")
    rules += dropping(decoder_rules(layout) + decoder_rules(teacher),
                      "the pre-training decoder (--target pretraining keeps it)")
    if layout.head_prefix is not None:
        if target == "classification":
            rules += [(pattern, template, "") for pattern, template in head_rules(layout)]
        else:
            rules += dropping(head_rules(layout), "the classification head (--target classification keeps it)")
    return rules


def rename_state_dict(source: SourceCheckpoint, target: str, use_ema: bool):
    """Source weights under our names. Returns (converted, unknown source keys, {reason: count} of left-out keys).

    Positional tables are not weights of ours (we recompute them): `verify_position_tables` checks them instead.
    """
    rules = conversion_rules(source, target, use_ema)
    position_keys = {source.layout.positions_key, source.layout.teacher().positions_key}
    converted, unknown, left_out = {}, [], {}
    for key, tensor in source.state_dict.items():
        if key in position_keys:
            continue
        for pattern, template, reason in rules:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            if template is None:
                left_out[reason] = left_out.get(reason, 0) + 1
            else:
                converted[template.format(*match.groups())] = tensor
            break
        else:
            unknown.append(key)
    if target == "pretraining":
        converted["teacher.num_updates"] = torch.tensor(source.num_updates or 0, dtype=torch.long)
    return converted, unknown, left_out


def key_problems(converted: dict[str, torch.Tensor], unknown: list[str], expected: dict[str, torch.Size]) -> list[str]:
    problems = [f"unexpected source key (no weight of ours takes it): {key}" for key in sorted(unknown)]
    problems += [f"unexpected key (the model has no such weight): {key}" for key in sorted(converted.keys() - expected)]
    problems += [
        f"missing key (the checkpoint does not provide it): {key}" for key in sorted(expected - converted.keys())
    ]
    problems += [
        f"shape mismatch for {key}: checkpoint {tuple(converted[key].shape)}, model {tuple(expected[key])}"
        for key in sorted(set(converted) & set(expected))
        if tuple(converted[key].shape) != tuple(expected[key])
    ]
    return problems


def raise_for_problems(problems: list[str], what: str):
    if problems:
        listing = "\n  ".join(problems)
        raise ConversionError(f"refusing to convert {what}: {len(problems)} problem(s), nothing written:\n  {listing}")


def verify_position_tables(source: SourceCheckpoint, config: EATConfig, keys_used: list[str]) -> dict[str, float]:
    """Checks every positional table the conversion relies on equals our recomputed table on the rows it has."""
    differences, problems = {}, []
    for key in keys_used:
        table = source.state_dict.get(key)
        if table is None:
            problems.append(f"missing key (the checkpoint does not provide it): {key}")
            continue
        if table.is_meta:
            continue
        num_rows = table.shape[-2]
        if table.dim() != 3 or table.shape[-1] != config.hidden_size or num_rows % config.num_freq_patches:
            problems.append(
                f"shape mismatch for {key}: {tuple(table.shape)}, expected [1, rows, {config.hidden_size}] with rows a "
                f"multiple of {config.num_freq_patches} (512 or 6144 in the official checkpoints)"
            )
            continue
        ours = sincos_position_table(num_rows // config.num_freq_patches, config.num_freq_patches, config.hidden_size)
        difference = (table[0].float() - ours).abs()
        worst = float(difference.max())
        differences[f"positional table {key} ({num_rows} rows)"] = worst
        if worst > TOLERANCE:
            bad_rows = (difference.amax(dim=1) > TOLERANCE).nonzero().flatten().tolist()
            problems.append(
                f"positional table {key} differs from EAT's fixed 2-D sin-cos table (which this package recomputes): "
                f"max |difference| {worst:.3g} > {TOLERANCE:g} on {len(bad_rows)} of {num_rows} rows (first rows "
                f"{bad_rows[:5]}); the checkpoint is corrupted or is not EAT"
            )
    raise_for_problems(problems, f"{source.path}")
    return differences


# ----------------------------------------------------------------------------------------------------------------------
# Independent reference: EAT.md §2 written with plain torch ops on the original key names


def reference_encoder(weights, layout: SourceLayout, spectrogram, num_heads: int, eps: float):
    """Official forward of one encoder: returns (output of the last block, each block's FFN output)."""
    encoder, blocks = layout.encoder_prefix, layout.blocks_prefix
    patch_weight = weights[f"{encoder}local_encoder.proj.weight"]
    patch_size = patch_weight.shape[-1]
    patch_bias = weights[f"{encoder}local_encoder.proj.bias"]
    patches = F.conv2d(spectrogram[:, None], patch_weight, patch_bias, stride=patch_size)
    patches = patches.flatten(2).transpose(1, 2)
    patches = patches + weights[layout.positions_key][:, : patches.shape[1]]
    batch_size, _, width = patches.shape
    cls = weights[f"{encoder}extra_tokens"].expand(batch_size, -1, -1)
    x = F.layer_norm(
        torch.cat([cls, patches], dim=1), (width,),
        weights[f"{encoder}{layout.context_norm}.weight"], weights[f"{encoder}{layout.context_norm}.bias"], eps,
    )
    num_tokens, head_dim = x.shape[1], width // num_heads
    ffn_outputs = []
    index = 0
    while f"{blocks}{index}.attn.qkv.weight" in weights:
        p = f"{blocks}{index}."
        qkv = F.linear(x, weights[p + "attn.qkv.weight"], weights.get(p + "attn.qkv.bias"))
        q, k, v = qkv.reshape(batch_size, num_tokens, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * head_dim**-0.5
        attention = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
        attended = (attention @ v).transpose(1, 2).reshape(batch_size, num_tokens, width)
        attended = F.linear(attended, weights[p + "attn.proj.weight"], weights[p + "attn.proj.bias"])
        x = F.layer_norm(x + attended, (width,), weights[p + "norm1.weight"], weights[p + "norm1.bias"], eps)
        hidden = F.gelu(F.linear(x, weights[p + "mlp.fc1.weight"], weights[p + "mlp.fc1.bias"]))
        ffn = F.linear(hidden, weights[p + "mlp.fc2.weight"], weights[p + "mlp.fc2.bias"])
        ffn_outputs.append(ffn)
        x = F.layer_norm(x + ffn, (width,), weights[p + "norm2.weight"], weights[p + "norm2.bias"], eps)
        index += 1
    return x, ffn_outputs


def reference_teacher_targets(ffn_outputs, top_k: int):
    layers = [F.instance_norm(ffn[:, 1:].transpose(1, 2)).transpose(1, 2) for ffn in ffn_outputs[-top_k:]]
    targets = torch.stack(layers).mean(dim=0)
    targets = F.layer_norm(targets, targets.shape[-1:])
    return targets, targets.mean(dim=1)


def reference_decoder(weights, layout: SourceLayout, tokens, num_time_patches: int):
    batch_size, num_patches, channels = tokens.shape
    grid = tokens.transpose(1, 2).reshape(batch_size, channels, num_time_patches, num_patches // num_time_patches)
    index = 0
    while f"{layout.decoder_prefix}blocks.{index}.0.weight" in weights:
        conv_weight = weights[f"{layout.decoder_prefix}blocks.{index}.0.weight"]
        out = F.conv2d(
            grid, conv_weight, weights[f"{layout.decoder_prefix}blocks.{index}.0.bias"],
            padding=conv_weight.shape[-1] // 2, groups=grid.shape[1] // conv_weight.shape[1],
        )
        out = F.layer_norm(out.permute(0, 2, 3, 1), out.shape[1:2], eps=DECODER_NORM_EPS).permute(0, 3, 1, 2)
        grid = F.gelu(out) + grid
        index += 1
    flat = grid.reshape(batch_size, grid.shape[1], -1).transpose(1, 2)
    return F.linear(flat, weights[f"{layout.decoder_prefix}proj.weight"], weights[f"{layout.decoder_prefix}proj.bias"])


def verification_inputs(config: EATConfig, max_position_rows: int):
    """Fixed inputs: a 256-frame spectrogram batch (shorter if the positional table is), and decoder tokens."""
    generator = torch.Generator().manual_seed(0)
    num_time_patches = min(256 // config.patch_size, max_position_rows // config.num_freq_patches)
    spectrogram = torch.randn(2, num_time_patches * config.patch_size, config.num_mel_bins, generator=generator)
    tokens = torch.randn(2, num_time_patches * config.num_freq_patches, config.hidden_size, generator=generator)
    return spectrogram, tokens, num_time_patches


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


@torch.no_grad()
def compare_with_reference(model, source: SourceCheckpoint, target: str, use_ema: bool, weights) -> dict[str, float]:
    """Max |difference| between the converted model and the independent reference, per compared output."""
    config, layout = model.config, source.layout
    rows = weights[layout.positions_key].shape[-2]
    spectrogram, tokens, num_time_patches = verification_inputs(config, rows)
    heads, eps = config.num_attention_heads, config.layer_norm_eps
    results = {}
    if target == "encoder":
        encoder_layout = layout.teacher() if use_ema else layout
        reference, _ = reference_encoder(weights, encoder_layout, spectrogram, heads, eps)
        name = "teacher" if use_ema else "student"
        results[f"{name} last_hidden_state"] = max_difference(model(spectrogram).last_hidden_state, reference)
        return results
    reference, _ = reference_encoder(weights, layout, spectrogram, heads, eps)
    results["student last_hidden_state"] = max_difference(model.eat(spectrogram).last_hidden_state, reference)
    if target == "classification":
        prefix = layout.head_prefix
        cls = reference[:, 0] if config.classifier_pooling == "cls" else reference[:, 1:].mean(dim=1)
        if config.use_fc_norm:
            cls = F.layer_norm(
                cls, cls.shape[-1:], weights[f"{prefix}fc_norm.weight"], weights[f"{prefix}fc_norm.bias"], eps
            )
        reference_logits = F.linear(cls, weights[f"{prefix}head.weight"], weights[f"{prefix}head.bias"])
        results["logits"] = max_difference(model(spectrogram).logits, reference_logits)
    if target == "pretraining":
        teacher_layout = layout.teacher()
        teacher_reference, ffn_outputs = reference_encoder(weights, teacher_layout, spectrogram, heads, eps)
        results["teacher last_hidden_state"] = max_difference(
            model.teacher.encoder(spectrogram).last_hidden_state, teacher_reference
        )
        frame_targets, utterance_targets = model.teacher(spectrogram)
        reference_frame, reference_utterance = reference_teacher_targets(ffn_outputs, config.average_top_k_layers)
        results["teacher frame targets"] = max_difference(frame_targets, reference_frame)
        results["teacher utterance targets"] = max_difference(utterance_targets, reference_utterance)
        results["decoder output"] = max_difference(
            model.decoder(tokens, num_time_patches), reference_decoder(weights, layout, tokens, num_time_patches)
        )
    return results


@torch.no_grad()
def hub_port_eps_effect(source: SourceCheckpoint, config: EATConfig, weights) -> float:
    """How far the hub port's logits (fc_norm eps 1e-5) lie from the official ones (eps 1e-6) we reproduce."""
    spectrogram, _, _ = verification_inputs(config, weights[source.layout.positions_key].shape[-2])
    hidden, _ = reference_encoder(
        weights, source.layout, spectrogram, config.num_attention_heads, config.layer_norm_eps
    )
    prefix = source.layout.head_prefix
    logits = [
        F.linear(
            F.layer_norm(hidden[:, 0], (config.hidden_size,), weights[f"{prefix}fc_norm.weight"],
                         weights[f"{prefix}fc_norm.bias"], eps),
            weights[f"{prefix}head.weight"], weights[f"{prefix}head.bias"],
        )
        for eps in (config.layer_norm_eps, HUB_PORT_FC_NORM_EPS)
    ]
    return max_difference(*logits)


# ----------------------------------------------------------------------------------------------------------------------
# The whole conversion


def infer_target(source: SourceCheckpoint) -> str:
    return "classification" if source.has_head else "encoder"


def check_request(source: SourceCheckpoint, target: str, use_ema: bool):
    require(target in TARGETS, f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    where = f"{source.path} ({source.layout.description})"
    if use_ema:
        require(target == "encoder", "--use_ema converts the EMA teacher into an encoder: use it with --target encoder "
                "(--target pretraining keeps student and teacher)")
        require(source.has_teacher, f"--use_ema: {where} holds no EMA teacher (`_ema`)")
    if target == "pretraining":
        require(source.has_teacher and source.has_decoder,
                f"--target pretraining needs the EMA teacher (`_ema`) and the decoder, which {where} does not hold: "
                "only fairseq pre-training checkpoints have them")
    if target == "classification":
        require(source.has_head, f"--target classification needs a classification head (`head.*`), which {where} "
                "does not hold: convert it with --target encoder and fine-tune")


def plan_conversion(source: SourceCheckpoint, target: str, use_ema: bool = False, config: EATConfig | None = None):
    """Renames the weights and checks them against the target model's, without computing anything.

    Works on meta tensors too (key manifests), since only names and shapes are looked at. Returns
    `(config, converted state dict, {reason: count} of source keys left out on purpose)`; raises ConversionError
    listing every unknown, missing, unexpected or misshaped key.
    """
    check_request(source, target, use_ema)
    config = config if config is not None else config_for(source, target)
    converted, unknown, dropped = rename_state_dict(source, target, use_ema)
    with torch.device("meta"):
        expected = {key: value.shape for key, value in TARGET_CLASSES[target](config).state_dict().items()}
    raise_for_problems(key_problems(converted, unknown, expected), f"{source.path}")
    return config, converted, dropped


def build_converted_model(
    source: SourceCheckpoint, target: str | None = None, use_ema: bool = False, id2label=None
):
    """The converted, verified model (in eval mode) and its report. Raises ConversionError instead of a bad model."""
    target = target or infer_target(source)
    check_request(source, target, use_ema)
    config = config_for(source, target, id2label=id2label)
    config, converted, dropped = plan_conversion(source, target, use_ema, config)
    weights = {key: value.float() if value.is_floating_point() else value for key, value in source.state_dict.items()}
    converted = {key: value.float() if value.is_floating_point() else value for key, value in converted.items()}

    layouts_used = [source.layout.teacher()] if use_ema else [source.layout]
    if target == "pretraining":
        layouts_used.append(source.layout.teacher())
    position_differences = verify_position_tables(source, config, [layout.positions_key for layout in layouts_used])

    model = TARGET_CLASSES[target](config)
    result = model.load_state_dict(converted, strict=False)
    raise_for_problems(
        [f"missing key after loading: {key}" for key in result.missing_keys]
        + [f"unexpected key after loading: {key}" for key in result.unexpected_keys],
        f"{source.path}",
    )
    model.eval()
    differences = compare_with_reference(model, source, target, use_ema, weights)
    too_far = {name: value for name, value in differences.items() if not value <= TOLERANCE}
    if too_far:
        listing = ", ".join(f"{name}: {value:.3g}" for name, value in too_far.items())
        raise ConversionError(
            f"refusing to convert {source.path}: the converted model disagrees with the reference forward over the "
            f"original weights by more than {TOLERANCE:g} ({listing}); nothing written"
        )

    report = ConversionReport(
        source=str(source.path), layout=source.layout.description, target=target,
        weights="EMA teacher" if use_ema else ("student + EMA teacher" if target == "pretraining" else "student"),
        max_abs_differences={**position_differences, **differences},
    )
    for reason, count in dropped.items():
        report.notes.append(f"left out {count} weights: {reason}")
    if source.layout is HUB_PORT and target == "classification" and config.use_fc_norm:
        report.notes.append(
            f"the hub port normalises before its head with eps {HUB_PORT_FC_NORM_EPS:g}; the official model and this "
            f"conversion use {config.layer_norm_eps:g}: logits differ from the hub port's by at most "
            f"{hub_port_eps_effect(source, config, weights):.3g} on the verification input"
        )
    if target == "pretraining":
        report.notes.append(f"teacher.num_updates = {source.num_updates or 0} ({source.num_updates_origin})")
    if any(value.dtype != torch.float32 for value in source.state_dict.values() if value.is_floating_point()):
        report.notes.append("the checkpoint's weights were upcast to float32")
    return model, report


def describe(model, report: ConversionReport) -> str:
    config = model.config
    return (
        f"EAT ({config.hidden_size} wide, {config.num_hidden_layers} layers, {config.num_attention_heads} heads) "
        f"converted from the official {report.layout} {Path(report.source).name} ({report.weights} weights) by "
        f"modeling_eat's converter; verified against the official math within {TOLERANCE:g}."
    )


def save_converted(model, output_dir: str | Path, report: ConversionReport, model_id: str | None = None) -> Path:
    """Writes weights, config, code files, preprocessor config and a model card; checks the code files are there."""
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    EATFeatureExtractor.from_preset("audioset", max_length=model.config.max_length).save_pretrained(output_dir)
    missing = [name for name in CODE_FILES if not (output_dir / name).is_file()]
    if missing:
        raise ConversionError(
            f"{output_dir} lacks the code files {', '.join(missing)} that trust_remote_code loading needs: "
            "import modeling_eat (which registers the classes for saving) before converting"
        )
    # Imported here: hub_utils pulls in the hub client's card machinery, which reading checkpoints does not need.
    from .hub_utils import write_model_card

    write_model_card(output_dir, description=describe(model, report), model_id=model_id)
    report.output_dir = str(output_dir)
    return output_dir


def convert_checkpoint(
    checkpoint_path: str | Path,
    output_dir: str | Path,
    *,
    target: str | None = None,
    use_ema: bool = False,
    id2label=None,
    trust_pickle: bool = False,
    push_to_hub: str | None = None,
    token: str | None = None,
    private: bool = False,
) -> ConversionReport:
    """Reads, converts, verifies and (only then) writes one checkpoint; optionally publishes the folder."""
    source = load_source_checkpoint(checkpoint_path, trust_pickle=trust_pickle)
    model, report = build_converted_model(source, target=target, use_ema=use_ema, id2label=id2label)
    save_converted(model, output_dir, report, model_id=push_to_hub)
    if push_to_hub:
        from .hub_utils import publish_folder

        report.repo_url = publish_folder(
            output_dir, push_to_hub, token=token, private=private,
            commit_message=f"Convert {Path(checkpoint_path).name} ({report.target}, {report.weights} weights)",
        )
    return report


__all__ = [
    "ConversionError",
    "ConversionReport",
    "UnsafeCheckpointError",
    "audioset_id2label",
    "build_converted_model",
    "convert_checkpoint",
    "load_source_checkpoint",
    "plan_conversion",
]
