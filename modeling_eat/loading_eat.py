# Copyright 2026 The modeling_eat authors.
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in compliance with
# the License. You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software distributed under the License is distributed on
# an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the License for the
# specific language governing permissions and limitations under the License.
"""How checkpoints become EAT models: the official layouts and what `from_pretrained` does with what a checkpoint
lacks or holds beyond a class.

- The official checkpoints: the parameter names of the fairseq modules (`models/images.py`, `models/modules.py`,
  `models/EAT_audio_classification.py` of the EAT repository) and of the hub's remote-code port (the `worstchan/EAT-*`
  repositories: `configuration_eat.py`, `eat_model.py`), the port's config translated into `EATConfig` fields, and the
  AudioSet names of the official heads. The converter (`modeling_eat.conversion`) reads fairseq files with them;
  `from_pretrained` loads the port's folders natively with them.
- The load policy: parts of another EAT class (a classification head, the pre-training teacher and decoder) are
  initialised or left out with a one-line warning; a checkpoint whose encoder weights are missing loads as
  transformers' contract says (initialised, listed in `output_loading_info`) with a loud warning that names its layout,
  what matched and the fix, so that a foreign folder never becomes a silent random model.

Ships with saved folders (the config and the model import it), so it imports only transformers and itself.
"""

import json
import re
from pathlib import Path

from transformers.utils import logging
from transformers.utils.loading_report import update_key_name


logger = logging.get_logger(__name__)

# The official heads classify AudioSet's 527 classes, several per clip (sigmoid; `EAT_audio_classification.py`).
AUDIOSET_NUM_CLASSES = 527


def audioset_id2label() -> dict[int, str]:
    """The 527 AudioSet class names, in the output order of AudioSet heads (package data beside this file; a folder
    loaded as remote code does not carry it: OSError)."""
    data = json.loads(Path(__file__).with_name("audioset_labels.json").read_text(encoding="utf-8"))
    return dict(enumerate(data["labels"]))


# Parameter names of the official modules → ours. The port's folders load with them, the converter renames fairseq
# checkpoints with them.
OFFICIAL_EMBEDDING_PARAMETERS = {
    "local_encoder.proj": "embeddings.patch_embeddings.projection",
    "extra_tokens": "embeddings.cls_token",
}
# norm1 follows the attention, norm2 the MLP (post-LN `AltBlock`s).
OFFICIAL_BLOCK_PARAMETERS = {
    "norm1": "attention_norm",
    "attn.qkv": "attention.qkv_proj",
    "attn.proj": "attention.o_proj",
    "norm2": "output_norm",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
OFFICIAL_HEAD_PARAMETERS = {"fc_norm": "fc_norm", "head": "classifier"}
# Where the encoder's weights start in each official file: fairseq keeps the audio branch under its data2vec name
# `modality_encoders.IMAGE`, fine-tuning wraps the whole model in `model.`, the hub port keeps everything under
# `model.` and calls the embedding LayerNorm `pre_norm`.
FAIRSEQ_PRETRAINING_ENCODER_PREFIX = "modality_encoders.IMAGE."
FAIRSEQ_FINETUNED_ENCODER_PREFIX = "model.modality_encoders.IMAGE."
HUB_PORT_PREFIX = "model."
HUB_PORT_EMBEDDING_NORM = "pre_norm"
# What the warning on a foreign checkpoint calls the official layouts, most specific first.
OFFICIAL_LAYOUTS = {
    FAIRSEQ_FINETUNED_ENCODER_PREFIX: "a fairseq fine-tuned checkpoint",
    FAIRSEQ_PRETRAINING_ENCODER_PREFIX: "a fairseq pre-training checkpoint",
    f"{HUB_PORT_PREFIX}blocks.": "the hub's remote-code port (worstchan/EAT-*)",
}


def hub_port_key_mapping() -> dict[str, str]:
    """`from_pretrained(key_mapping=...)` patterns that rename the hub port's weights to ours; none matches ours.

    transformers ends a pattern that ends in a letter on a name boundary, so `model.head` leaves `model.header` alone.
    """
    prefix = re.escape(HUB_PORT_PREFIX)
    renames = {**OFFICIAL_EMBEDDING_PARAMETERS, HUB_PORT_EMBEDDING_NORM: "embeddings.layer_norm",
               **OFFICIAL_HEAD_PARAMETERS}
    mapping = {f"^{prefix}{re.escape(official)}": ours for official, ours in renames.items()}
    for official, ours in OFFICIAL_BLOCK_PARAMETERS.items():
        mapping[rf"^{prefix}blocks\.(\d+)\.{re.escape(official)}\."] = rf"layers.\1.{ours}."
    return mapping


# The config.json fields of the hub port with the defaults of its config class, for the fields a file leaves out.
HUB_PORT_DEFAULTS = {
    "embed_dim": 768,
    "depth": 12,
    "num_heads": 12,
    "patch_size": 16,
    "stride": 16,
    "in_chans": 1,
    "mel_bins": 128,
    "max_length": 768,
    "num_classes": 527,
    "model_variant": "pretrain",
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "drop_rate": 0.0,
    "attn_drop_rate": 0.0,
    "activation_dropout": 0.0,
    "post_mlp_drop": 0.0,
    "start_drop_path_rate": 0.0,
    "end_drop_path_rate": 0.0,
    "layer_norm_first": False,
    "norm_eps": 1e-6,
    "norm_affine": True,
    "fixed_positions": True,
    "img_size": (1024, 128),
}
# Fields only the port's config has: one of them marks a config.json as the port's. (`patch_size`, `qkv_bias` and
# `max_length` are names of ours too; the port's `max_length` counts rows of patches, ours frames.)
HUB_PORT_MARKERS = ("embed_dim", "depth", "num_heads", "mel_bins", "model_variant", "img_size")
# The port's fine-tuned head normalises with `nn.LayerNorm`'s default eps, not the encoder's 1e-6 (`eat_model.py`).
HUB_PORT_FC_NORM_EPS = 1e-5
_HUB_PORT_DROPOUTS = (
    "drop_rate", "attn_drop_rate", "activation_dropout", "post_mlp_drop", "start_drop_path_rate", "end_drop_path_rate"
)


def is_hub_port_config(config_dict: dict) -> bool:
    return any(name in config_dict for name in HUB_PORT_MARKERS)


def refuse_hub_port_fields(kwargs: dict) -> None:
    """The port's field names passed to `EATConfig(...)` itself: their names collide with ours (`max_length`), so
    only a whole config.json can be translated."""
    fields = sorted(name for name in HUB_PORT_MARKERS if name in kwargs)
    if fields:
        raise ValueError(
            f"The hub port's config fields {', '.join(fields)} are not EATConfig's: build it with "
            "EATConfig.from_dict(hub_config) (from_pretrained does), which translates them, or use our names "
            "(hidden_size, num_hidden_layers, num_attention_heads, num_mel_bins, ...)."
        )


def settings_from_hub_port(hub_config: dict) -> dict:
    """`EATConfig` fields from a config.json of the hub's remote-code port; refuses settings whose math this
    package does not implement, naming the field.

    The port's training-time dropouts have no exact counterpart here and are left out (with a warning when set).
    """
    port = {**HUB_PORT_DEFAULTS, **{name: hub_config[name] for name in HUB_PORT_DEFAULTS if name in hub_config}}
    refusals = [
        (not port["layer_norm_first"], "layer_norm_first=True (pre-LN blocks) is not EAT's post-LN architecture"),
        (port["norm_affine"], "norm_affine=False is not supported: EAT's LayerNorms are affine"),
        (port["fixed_positions"], "fixed_positions=False (learned positions) is not supported: EAT's are sin-cos"),
        (port["in_chans"] == 1, f"in_chans={port['in_chans']}: EAT takes one-channel spectrograms"),
        (port["stride"] == port["patch_size"], f"stride={port['stride']} differs from patch_size="
         f"{port['patch_size']}: EAT's patches do not overlap"),
        (port["model_variant"] in ("pretrain", "finetune"),
         f"model_variant={port['model_variant']!r}: the hub port knows 'pretrain' and 'finetune'"),
    ]
    problems = [message for ok, message in refusals if not ok]
    if problems:
        raise ValueError("this hub-port config.json describes a model EAT cannot load: " + "; ".join(problems))
    dropped = [name for name in _HUB_PORT_DROPOUTS if port[name]]
    if dropped:
        settings_text = ", ".join(f"{name}={port[name]}" for name in dropped)
        logger.warning(
            f"The hub-port config sets {settings_text}: training-time settings that are not carried over. Set "
            "hidden_dropout_prob, attention_probs_dropout_prob or drop_path_rate to fine-tune with dropout."
        )
    settings = {
        "hidden_size": port["embed_dim"],
        "num_hidden_layers": port["depth"],
        "num_attention_heads": port["num_heads"],
        "intermediate_size": int(port["embed_dim"] * port["mlp_ratio"]),
        "patch_size": port["patch_size"],
        "num_mel_bins": port["mel_bins"],
        "max_time_patches": port["max_length"],
        "max_length": int(port["img_size"][0]),
        "qkv_bias": port["qkv_bias"],
        "layer_norm_eps": port["norm_eps"],
    }
    if port["model_variant"] == "finetune":
        settings["fc_norm_eps"] = HUB_PORT_FC_NORM_EPS
        settings["num_labels"] = port["num_classes"]
        if port["num_classes"] == AUDIOSET_NUM_CLASSES:
            settings["problem_type"] = "multi_label_classification"
            try:
                id2label = audioset_id2label()
            except OSError:  # this file runs as a folder's remote code, without the label file
                pass
            else:
                del settings["num_labels"]
                settings["id2label"] = id2label
                settings["label2id"] = {name: index for index, name in id2label.items()}
    return settings


def translate_hub_port_config(config_dict: dict) -> dict:
    """A config.json dict of the port as one of ours; any other dict unchanged.

    The port's `auto_map` names its own code, which reads its layout: once translated, the config is ours and so is
    the code a saved folder must carry. Labels the file names itself win over the AudioSet defaults.
    """
    if not is_hub_port_config(config_dict):
        return config_dict
    ours = {name: value for name, value in config_dict.items() if name not in (*HUB_PORT_DEFAULTS, "auto_map")}
    settings = settings_from_hub_port(config_dict)
    if "id2label" in ours:
        for name in ("num_labels", "id2label", "label2id"):
            settings.pop(name, None)
    return {**ours, **settings}


# The parts one EAT class has and a checkpoint of another may lack or hold beyond it: loading across classes
# reports them in one line each. Everything else is the encoder.
TASK_PARTS = {
    "fc_norm.": "the classification head",
    "classifier.": "the classification head",
    "teacher.": "the EMA teacher (a copy of the student)",
    "decoder.": "the pre-training decoder",
}


def task_part_of(key: str) -> str | None:
    return next((part for prefix, part in TASK_PARTS.items() if key.startswith(prefix)), None)


def checkpoint_layout(keys: set[str]) -> str:
    """What a checkpoint whose weights are not ours looks like, from the names it holds."""
    if not keys:
        return "holds no weights at all"
    for prefix, layout in OFFICIAL_LAYOUTS.items():
        if any(key.startswith(prefix) for key in keys):
            return f"is {layout}"
    names = sorted({key.split(".")[0] for key in keys})
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"holds another model's weights (top-level names: {shown})"


def load_pretrained(load, pretrained_model_name_or_path, *model_args, **kwargs):
    """`PreTrainedModel.from_pretrained` (`load`, bound to the class) with the port's renames added to `key_mapping`
    and the loading info completed with the keys `review_loaded_keys` reported in its own words."""
    output_loading_info = kwargs.pop("output_loading_info", False)
    port_mapping = hub_port_key_mapping()
    kwargs["key_mapping"] = {**port_mapping, **(kwargs.get("key_mapping") or {})}
    model, loading_info = load(pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs)
    # transformers undoes a load's renaming when saving; the port's names are not to come back.
    model._weight_conversions = [
        conversion
        for conversion in getattr(model, "_weight_conversions", None) or []
        if conversion.source_patterns[0] not in port_mapping
    ]
    for name, keys in model.__dict__.pop("_reported_keys", {}).items():
        loading_info[name] = loading_info[name] | keys
    return (model, loading_info) if output_loading_info else model


def review_loaded_keys(model, loading_info) -> None:
    """Reports, in one warning each, what a checkpoint lacks or holds beyond `model`'s class, and takes those keys
    out of transformers' table (`load_pretrained` puts them back into the loading info).

    Task parts of another class are named as such. Missing encoder weights are initialised, as transformers' contract
    says, and the warning that they are names the checkpoint's layout, how many encoder weights matched, and the fix.
    Shapes that do not match stay in transformers' report, which refuses them unless `ignore_mismatched_sizes=True`.
    """
    missing_encoder = {key for key in loading_info.missing_keys if task_part_of(key) is None}
    new_parts = loading_info.missing_keys - missing_encoder
    unknown = {key for key in loading_info.unexpected_keys if task_part_of(key) is None}
    unused_parts = loading_info.unexpected_keys - unknown
    if missing_encoder:
        logger.warning(foreign_checkpoint_warning(model, missing_encoder, unknown))
    if new_parts:
        head = TASK_PARTS["classifier."] in {task_part_of(key) for key in new_parts}
        advice = " Train it first." if head else ""
        log_task_parts(model, new_parts, "newly initialized, not in the checkpoint", advice)
    if unused_parts:
        log_task_parts(model, unused_parts, "in the checkpoint, not used")
    # Unknown keys beside a complete encoder are transformers' to report, as for any model.
    reported_unknown = unknown if missing_encoder else set()
    loading_info.missing_keys = loading_info.missing_keys - new_parts - missing_encoder
    loading_info.unexpected_keys = loading_info.unexpected_keys - unused_parts - reported_unknown
    model._reported_keys = {
        "missing_keys": new_parts | missing_encoder,
        "unexpected_keys": unused_parts | reported_unknown,
    }


def log_task_parts(model, keys: set[str], what: str, advice: str = "") -> None:
    parts = ", ".join(sorted({task_part_of(key) for key in keys}))
    logger.warning(f"{type(model).__name__} from {model.name_or_path}: {what}: {parts} "
                   f"({', '.join(update_key_name(keys))}).{advice}")


def foreign_checkpoint_warning(model, missing: set[str], unknown: set[str]) -> str:
    encoder_keys = [key for key in model.state_dict() if task_part_of(key) is None]
    matched = len(encoder_keys) - len(missing)
    lines = [
        f"{type(model).__name__}.from_pretrained({model.name_or_path!r}): {len(missing)} of the "
        f"{len(encoder_keys)} encoder weights are not in the checkpoint ({matched} matched), so they are RANDOMLY "
        f"INITIALISED and the model's outputs mean nothing until it is trained. The checkpoint "
        f"{checkpoint_layout(unknown)}.",
        f"  missing: {', '.join(update_key_name(missing))}",
    ]
    if unknown:
        lines.append(f"  in the checkpoint instead: {', '.join(update_key_name(unknown))}")
    lines.append(
        "Fix: folders saved by this package and those of the hub's remote-code port (worstchan/EAT-*) load as they "
        "are, with a config.json that matches their weights; convert official fairseq .pt files with `python -m "
        "modeling_eat.convert`. To start from random weights on purpose, build the model from its config; "
        "`output_loading_info=True` lists every key."
    )
    return "\n".join(lines)


__all__ = [
    "AUDIOSET_NUM_CLASSES",
    "HUB_PORT_FC_NORM_EPS",
    "TASK_PARTS",
    "audioset_id2label",
    "hub_port_key_mapping",
    "is_hub_port_config",
    "load_pretrained",
    "review_loaded_keys",
    "settings_from_hub_port",
    "task_part_of",
    "translate_hub_port_config",
]
