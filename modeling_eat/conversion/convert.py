"""The whole conversion: read, rename, check every key and shape, verify against the independent forward, and only
then write the folder (weights, config, code files, preprocessor config and a model card)."""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..configuration_eat import EATConfig
from ..feature_extraction_eat import EATFeatureExtractor
from ..hub import CODE_FILES, check_hub_access, publish_folder, write_model_card
from ..loading_eat import HUB_PORT_FC_NORM_EPS
from ..modeling_eat import EATForAudioClassification, EATForPreTraining, EATModel
from ..outputs import check_output_folder, check_writable, remove_run_files, same_folder
from ..runtime import CommandError
from .errors import ConversionError, raise_for_problems, require
from .layouts import HUB_PORT, SourceCheckpoint
from .reading import load_source_checkpoint
from .reference import TOLERANCE, compare_with_reference, hub_port_eps_effect
from .settings import config_for
from .weights import key_problems, rename_state_dict, verify_position_tables


TARGETS = ("encoder", "classification", "pretraining")
TARGET_CLASSES = {"encoder": EATModel, "classification": EATForAudioClassification, "pretraining": EATForPreTraining}


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


def infer_target(source: SourceCheckpoint) -> str:
    return "classification" if source.has_head else "encoder"


def check_request(source: SourceCheckpoint, target: str, use_ema: bool):
    require(target in TARGETS, f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    where = f"{source.path} ({source.layout.description})"
    if use_ema:
        require(target == "encoder", "--use_ema converts the EMA teacher into an encoder: use it with --target "
                "encoder (--target pretraining keeps student and teacher)")
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
            f"the hub port normalises before its head with eps {HUB_PORT_FC_NORM_EPS:g}, and so does this conversion "
            f"(as loading the folder directly does); the official fairseq head uses {config.layer_norm_eps:g}, which "
            f"moves the logits by at most {hub_port_eps_effect(source, config, weights):.3g} on the verification input"
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
    push_to_hub: bool = False,
    hub_model_id: str | None = None,
    hub_token: str | None = None,
    hub_private_repo: bool = False,
    overwrite_output_dir: bool = False,
) -> ConversionReport:
    """Reads, converts, verifies and (only then) writes one checkpoint; with `push_to_hub`, publishes the folder to
    `hub_model_id` (default: the output folder's name), as the training scripts do.

    A `output_dir` that holds another model or run (a fine-tuned folder, a pre-training run) is refused before any
    work unless `overwrite_output_dir`; then that model's and run's files (`modeling_eat.outputs.RUN_FILE_PATTERNS`:
    weights, configs, the model card, `eval_results.json`, trainer state, checkpoints, evaluation pictures) are
    deleted once the conversion is verified, so that nothing of the old model is left beside the new one; other files
    are kept."""
    if same_folder(checkpoint_path, output_dir):
        raise CommandError(
            f"--output_dir {output_dir} is the folder of --checkpoint_path: the converted model would replace the "
            "files it is converted from; choose another --output_dir."
        )
    stale = check_output_folder(output_dir, overwrite_output_dir)
    check_writable(output_dir)
    if push_to_hub:
        check_hub_access(hub_token)
    source = load_source_checkpoint(checkpoint_path, trust_pickle=trust_pickle)
    model, report = build_converted_model(source, target=target, use_ema=use_ema, id2label=id2label)
    if stale:
        remove_run_files(stale)
        report.notes.append(f"--overwrite_output_dir: deleted {', '.join(path.name for path in stale)}")
    save_converted(model, output_dir, report, model_id=hub_model_id if push_to_hub else None)
    if push_to_hub:
        report.repo_url = publish_folder(
            output_dir, hub_model_id, token=hub_token, private=hub_private_repo,
            commit_message=f"Convert {Path(checkpoint_path).name} ({report.target}, {report.weights} weights)",
        )
    return report


__all__ = [
    "TARGETS",
    "ConversionReport",
    "build_converted_model",
    "convert_checkpoint",
    "plan_conversion",
    "save_converted",
]
