"""The `EATConfig` of a converted model: the checkpoint's cfg (fairseq) or config.json (hub port), then what the
weights show, then our defaults; settings whose math this package does not implement are refused."""

import json
import re
from pathlib import Path

from huggingface_hub.errors import StrictDataclassError

from ..configuration_eat import EATConfig
from ..loading_eat import AUDIOSET_NUM_CLASSES, audioset_id2label, settings_from_hub_port
from .errors import ConversionError, require
from .layouts import SourceCheckpoint


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
        # The teacher's targets are only reproduced for EAT's recipe (`config/pretraining_AS2M.yaml`).
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


def read_id2label(id2label: str | Path | dict | list, num_labels: int) -> dict[int, str]:
    """Accepts a JSON file (or object) holding a `{"0": "name", ...}` map or a list of names."""
    if isinstance(id2label, (str, Path)):
        try:
            id2label = json.loads(Path(id2label).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConversionError(
                f"--id2label {id2label} cannot be read as a JSON file ({type(error).__name__}: {error}): pass a "
                "JSON file holding {\"0\": \"name\", ...} or a list of names"
            ) from None
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
        try:
            # The same translation as `EATConfig.from_pretrained` of the folder.
            settings.update(settings_from_hub_port(source.hub_config))
        except ValueError as error:
            raise ConversionError(f"{source.path}: {error}") from error
    weight_dims = dims_from_weights(source)
    for name, value in weight_dims.items():
        settings.setdefault(name, value)
    if "num_attention_heads" not in settings:
        # Head count is not visible in the weights: the official sizes all use 64-wide heads.
        settings["num_attention_heads"] = max(1, settings["hidden_size"] // 64)
    # The labels come from the head's weights and --id2label, whatever the source's config says.
    for name in ("num_labels", "id2label", "label2id", "problem_type"):
        settings.pop(name, None)
    if target == "classification":
        num_labels = weight_dims["num_labels"]
        if id2label is not None:
            settings["id2label"] = read_id2label(id2label, num_labels)
        elif num_labels == AUDIOSET_NUM_CLASSES:
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


__all__ = ["config_for", "read_id2label"]
