"""Model folders and the Hub, for the commands: what they check of a model path or Hub id before loading it, of a
Hub token before a run that ends in an upload, and the model cards and uploads of saved EAT folders (converted,
pre-trained or fine-tuned checkpoints).

`check_model_source` / `check_config_source` read a folder's or Hub id's config.json before anything is loaded or
written, and name in one line what is wrong (no such folder, a name the Hub does not serve, a model that is not EAT);
`check_hub_access` asks the Hub who a token belongs to, so that `--push_to_hub` without a token or network fails in
seconds instead of after training. `write_model_card` renders the package's `model_card.md` template into
`folder/README.md`; `publish_folder` checks that the folder loads with `trust_remote_code=True` anywhere, then uploads
it. Not shipped with saved folders: this module may use huggingface_hub freely.
"""

import json
import string
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCardData
from safetensors import safe_open

from .audio import first_line
from .configuration_eat import AUTO_MAP, SIZE_PRESETS, EATConfig
from .feature_extraction_eat import frames_to_seconds
from .loading_eat import TASK_PARTS
from .runtime import CommandError, refuse_unknown_preset


MODEL_CARD_TEMPLATE = Path(__file__).with_name("model_card.md")

# The files every saved folder carries for `trust_remote_code=True`: the modeling file reaches the others through
# relative imports, which `save_pretrained` follows to copy them; the config copies the pipeline's.
CODE_FILES = (
    "configuration_eat.py",
    "loading_eat.py",
    "modeling_eat.py",
    "masking_eat.py",
    "feature_extraction_eat.py",
    "pipeline_eat.py",
    "windowing_eat.py",
    "audio_io_eat.py",
)
CLASSIFICATION_ARCHITECTURE = "EATForAudioClassification"
PRETRAINING_ARCHITECTURE = "EATForPreTraining"

# Trainer output folders hold resumable checkpoints, TensorBoard logs and pickled arguments that a model repo should
# not carry.
HUB_IGNORE_PATTERNS = ["checkpoint-*/", "runs/", "__pycache__/", "*.pyc", "training_args.bin", ".ipynb_checkpoints/"]

# Keys Trainer.evaluate() adds next to the metrics proper.
_NON_METRIC_KEYS = {"loss", "runtime", "samples_per_second", "steps_per_second", "epoch"}
_METRIC_DISPLAY_NAMES = {"accuracy": "Accuracy", "map": "mAP", "f1": "F1", "top5_accuracy": "Top-5 accuracy"}
# Parameters of these sub-modules are not part of the encoder a user embeds with or fine-tunes.
_NON_ENCODER_PREFIXES = tuple(TASK_PARTS)

# Both snippets load the checkpoint and run one second of audio through it; they differ in the head and the output.
_USAGE_SNIPPET = '''```python
import numpy as np
import torch
from transformers import AutoFeatureExtractor, {imports}

model_id = "{model_id}"
feature_extractor = AutoFeatureExtractor.from_pretrained(model_id, trust_remote_code=True)
model = {auto_class}.from_pretrained(model_id, trust_remote_code=True)

waveform = np.random.default_rng(0).uniform(-0.1, 0.1, 16000).astype(np.float32)  # 1 s of 16 kHz mono audio
inputs = feature_extractor(waveform, sampling_rate=16000, return_tensors="pt")
with torch.no_grad():
{outputs}
```'''

_CLASSIFIER_OUTPUTS = '''    logits = model(**inputs).logits
print(model.config.id2label[int(logits.argmax(-1))])

# The pipeline reads files with ffmpeg.
classifier = pipeline("audio-classification", model=model_id, trust_remote_code=True)
print(classifier("sound.wav", top_k=5{score_function}))'''

_ENCODER_OUTPUTS = '''    outputs = model(**inputs)
clip_embedding = outputs.pooler_output  # [batch, hidden_size]: the CLS token
patch_embeddings = outputs.last_hidden_state[:, 1:]  # [batch, num_patches, hidden_size], time-major'''

_ENCODER_FINE_TUNING_NOTE = """
To fine-tune it, load it with `AutoModelForAudioClassification.from_pretrained(model_id, trust_remote_code=True,
num_labels=...)`: the classification head is new and must be trained."""


# ------------------------------------------------------------------------------------------ checks before the work


CONVERT_HINT = "python -m modeling_eat.convert turns an official EAT checkpoint into one"


def size_preset_of(config: dict) -> str | None:
    """The size preset (tiny, small, base, large) whose width and depth a config (as a dict) has, or None."""
    shape = (config.get("hidden_size"), config.get("num_hidden_layers"))
    for name, preset in SIZE_PRESETS.items():
        if (preset.get("hidden_size", 768), preset.get("num_hidden_layers", 12)) == shape:
            return name
    return None


def is_hub_id(name: str) -> bool:
    """Whether `name` is spelled as a Hub repository id (`name` or `namespace/name`)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _read_config(name: str, option: str, what: str, **hub_kwargs) -> dict:
    """The config.json of the folder or Hub id `name`, or a `CommandError` naming why there is none."""
    from transformers import PretrainedConfig

    path = Path(name)
    if not name.strip():
        raise CommandError(f"{option} is empty: pass {what}.")
    if path.is_file():
        raise CommandError(
            f"{option} {name} is a file: pass {what} (the folder holding config.json; {CONVERT_HINT})."
        )
    if not path.exists() and not is_hub_id(name):
        raise CommandError(f"{option} {name}: no such folder (and not a Hub id): check the path.")
    try:
        config, _ = PretrainedConfig.get_config_dict(name, **hub_kwargs)
    except (OSError, ValueError) as error:
        if path.is_dir():
            raise CommandError(
                f"{option} {name} holds no config.json: pass {what} (the folder `save_pretrained` wrote; "
                f"{CONVERT_HINT})."
            ) from None
        raise CommandError(
            f"{option} {name} is not a local folder, and the Hub did not serve a model of that name "
            f"({first_line(error)}): check the path or the id (and the connection, or HF_HUB_OFFLINE)."
        ) from None
    return config


def _check_local_weights(folder: Path, option: str) -> None:
    """A local model folder's weights, present and readable: a copy that left them behind, or a download cut short,
    would otherwise end in transformers' or safetensors' traceback once the data is loaded."""
    from safetensors import SafetensorError
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

    names = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    if not any((folder / name).is_file() for name in names):
        raise CommandError(
            f"{option} {folder} holds a config.json but no weights (none of {', '.join(names)}): pass the whole "
            "folder `save_pretrained` wrote (a copy may have left them behind)."
        )
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise CommandError(
                f"{option} {folder}: {weights.name} cannot be read ({first_line(error)}): it is damaged or "
                "incomplete; save or download the model again."
            ) from None


def check_model_source(
    name_or_path, option: str = "--model_name_or_path", weights: bool = True, **hub_kwargs
) -> dict:
    """The config.json (as a dict) of an EAT folder or Hub id, read before anything is loaded or written; a
    `CommandError` in one line for an empty name, a missing folder, a name the Hub does not serve, a model of
    another type (an AST or a wav2vec2 folder would otherwise load through the Auto classes and fail much later),
    or (with `weights`, for a local folder) weights missing or unreadable."""
    name = "" if name_or_path is None else str(name_or_path)
    config = _read_config(name, option, "an EAT model folder or Hub id", **hub_kwargs)
    model_type = config.get("model_type")
    if model_type != EATConfig.model_type:
        kind = f"a model of type {model_type!r}" if model_type else "a model without a model_type"
        architectures = ", ".join(config.get("architectures") or [])
        raise CommandError(
            f"{option} {name} holds {kind}{f' ({architectures})' if architectures else ''}, not EAT: pass an EAT "
            f"folder or Hub id ({CONVERT_HINT})."
        )
    if weights and Path(name).is_dir():
        _check_local_weights(Path(name), option)
    return config


def check_config_source(name, option: str = "--config_name", **hub_kwargs) -> None:
    """Checks a `--config_name` before the run: a size preset, a config JSON file, or an EAT folder or Hub id; a
    near miss of a preset (`tinyy`) is named as such rather than looked up on the Hub."""
    name = "" if name is None else str(name)
    if name in SIZE_PRESETS or Path(name).is_file():
        return
    refuse_unknown_preset(
        option, name, SIZE_PRESETS, "size preset", "a config JSON file or an EAT folder",
        found_elsewhere=Path(name).is_dir() or is_hub_id(name),
    )
    check_model_source(name, option, weights=False, **hub_kwargs)


def check_hub_access(token: str | None = None, option: str = "--push_to_hub", token_option: str = "--hub_token"):
    """The Hub user a token belongs to (the given one, else the logged-in one), asked before a run that ends in an
    upload; a `CommandError` in one line when there is no token, no connection (or HF_HUB_OFFLINE), or the Hub
    rejects the token or gives it read access only."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    later = f"or leave out {option} and upload the folder later with modeling_eat.hub.publish_folder"
    token = token or get_token()
    if not token:
        raise CommandError(
            f"{option} needs a Hub token and none is set: run `hf auth login` (or set HF_TOKEN), pass "
            f"{token_option}, {later}."
        )
    try:
        identity = HfApi(token=token).whoami()
    except OfflineModeIsEnabled:
        raise CommandError(
            f"{option}: HF_HUB_OFFLINE is set, so the upload at the end would fail: unset it, {later}."
        ) from None
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status == 401:
            raise CommandError(
                f"{option}: the Hub rejects the token (401 Unauthorized): log in again with `hf auth login` or pass "
                f"a valid {token_option}, {later}."
            ) from None
        raise CommandError(
            f"{option}: the Hub could not check the token ({first_line(error)}): try again, {later}."
        ) from None
    except Exception as error:  # no network: the HTTP client's connection errors, whichever client it is
        raise CommandError(
            f"{option}: the Hub cannot be reached to check the token ({first_line(error)}): check the connection, "
            f"{later}."
        ) from None
    role = ((identity.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise CommandError(
            f"{option}: the token of {identity.get('name')} may only read: create a token with write access "
            f"(https://huggingface.co/settings/tokens) and log in with it, {later}."
        )
    return identity.get("name")


# ------------------------------------------------------------------------------------------------- model cards


def write_model_card(
    folder,
    *,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    eval_results: dict | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    license: str = "apache-2.0",
    model_id: str | None = None,
    eval_dataset: str | None = None,
    eval_split: str = "test",
) -> Path:
    """
    Writes `folder/README.md` (replacing any) for a saved EAT folder from `model_card.md`, the folder's config and
    its weights.

    Args:
        folder: a folder written by `save_pretrained` (config.json, weights, preprocessor_config.json).
        base_model: Hub id of the checkpoint this one was fine-tuned or converted from.
        datasets: Hub ids of the training data sets.
        eval_results: metrics as `Trainer.evaluate()` returns them (`eval_accuracy`, `eval_map`, ...); see
            `eval_results_from_folder`. Bookkeeping keys (loss, runtime, epoch) are left out of the card.
        tags: extra Hub tags.
        description: first paragraph of the card; a default names the kind of checkpoint.
        license: Hub license identifier.
        model_id: the repo id the folder will be published as; used in the snippets and the model-index.
            Defaults to the folder name.
        eval_dataset: Hub id of the evaluation data set; defaults to the first of `datasets`.
        eval_split: split the metrics were computed on.

    Returns:
        The path of the written README.md.
    """
    folder = Path(folder)
    config = _read_json(folder / "config.json", fix="save the model into it with `model.save_pretrained(folder)`")
    preprocessor_path = folder / "preprocessor_config.json"
    preprocessor = json.loads(preprocessor_path.read_text()) if preprocessor_path.is_file() else None

    architectures = config.get("architectures") or []
    is_classifier = CLASSIFICATION_ARCHITECTURE in architectures
    is_pretraining = PRETRAINING_ARCHITECTURE in architectures
    model_id = model_id or folder.resolve().name
    metrics = _metrics_of(eval_results)
    eval_dataset = eval_dataset or (datasets[0] if datasets else None)
    eval_entries = _eval_result_entries(metrics, eval_dataset, eval_split)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="audio-classification" if is_classifier else "feature-extraction",
        license=license,
        tags=_card_tags(is_classifier, tags),
        datasets=list(datasets) if datasets else None,
        metrics=list(metrics) or None,
        base_model=base_model,
        # ModelCardData keeps `model_name` as a stray key unless it becomes the model-index name.
        model_name=model_id if eval_entries else None,
        eval_results=eval_entries or None,
    )
    num_labels = len(config.get("id2label") or {})
    if description is None:
        description = _default_description(is_classifier, is_pretraining, num_labels)
    if base_model is not None:
        description += f"\n\nBase model: [{base_model}](https://huggingface.co/{base_model})."

    if is_classifier:
        usage = _USAGE_SNIPPET.format(
            imports="AutoModelForAudioClassification, pipeline",
            model_id=model_id,
            auto_class="AutoModelForAudioClassification",
            # Before 5.23 the pipeline applies softmax whatever the problem type; naming sigmoid works on all versions.
            outputs=_CLASSIFIER_OUTPUTS.format(
                score_function=', function_to_apply="sigmoid"'
                if config.get("problem_type") == "multi_label_classification"
                else ""
            ),
        )
    else:
        usage = _USAGE_SNIPPET.format(
            imports="AutoModel", model_id=model_id, auto_class="AutoModel", outputs=_ENCODER_OUTPUTS
        )
        usage += "\n" + _ENCODER_FINE_TUNING_NOTE
    card = string.Template(MODEL_CARD_TEMPLATE.read_text()).substitute(
        front_matter=card_data.to_yaml(),
        title=model_id.split("/")[-1],
        description=description,
        details=_details_table(folder, config, preprocessor, datasets),
        intended_use=_intended_use(is_classifier, is_pretraining, num_labels),
        usage=usage,
        results=_results_section(metrics, eval_dataset, eval_split),
    )
    readme = folder / "README.md"
    readme.write_text(card)
    return readme


def eval_results_from_folder(folder) -> dict | None:
    """The metrics in `folder/eval_results.json` (written by `Trainer.save_metrics("eval", ...)`), or None."""
    path = Path(folder) / "eval_results.json"
    if not path.is_file():
        return None
    results = _read_json(path, fix="re-run the evaluation or delete the file")
    if not isinstance(results, dict):
        raise ValueError(f"{path} must hold a JSON object of metric names to values, got {type(results).__name__}.")
    return results


def card_evaluation_data(folder) -> tuple[str, str | None] | None:
    """The data set (and split) a folder's model card says the model was evaluated on: the first result of its
    model-index, else the first of its `datasets`; None when the card names none that can be loaded from here (a
    Hub id `owner/name`, or an existing folder: `write_model_card` keeps only the name of a local data set)."""
    from huggingface_hub import ModelCard

    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return None
    data = ModelCard.load(readme).data
    candidates = [(result.dataset_type, result.dataset_split) for result in data.eval_results or []]
    candidates += [(name, None) for name in data.datasets or []]
    for name, split in candidates:
        if name and ("/" in name and not Path(name).exists() or Path(name).is_dir()):
            return name, split
    return None


def check_folder_for_hub(folder) -> list[str]:
    """Problems that would stop `folder` from loading with `trust_remote_code=True` from the Hub; empty when ready."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a directory: pass the folder written by `save_pretrained`."]
    problems = []
    config_path = folder / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            return [f"config.json is not valid JSON ({error}): save the model again with `save_pretrained`."]
        if config.get("model_type") != EATConfig.model_type:
            problems.append(
                f"config.json has model_type {config.get('model_type')!r}, not {EATConfig.model_type!r}: "
                "this is not an EAT checkpoint; convert it first."
            )
        missing_classes = sorted(set(AUTO_MAP) - set(config.get("auto_map") or {}))
        if missing_classes:
            problems.append(
                f"config.json auto_map lacks {', '.join(missing_classes)}: load the folder and save it again with "
                "the modeling_eat package imported (EATConfig writes the full map), or copy the entries of "
                "modeling_eat.configuration_eat.AUTO_MAP into it."
            )
    else:
        problems.append("config.json is missing: save the model with `model.save_pretrained(folder)`.")
    missing_code = [name for name in CODE_FILES if not (folder / name).is_file()]
    if missing_code:
        problems.append(
            f"code files {', '.join(missing_code)} are missing: `import modeling_eat` before `save_pretrained`, "
            "which registers the classes for remote code and copies their files into the folder."
        )
    if not (folder / "preprocessor_config.json").is_file():
        problems.append(
            "preprocessor_config.json is missing: save the feature extractor too, e.g. "
            "`EATFeatureExtractor.from_preset('audioset').save_pretrained(folder)`."
        )
    problems.extend(_weight_problems(folder))
    readme = folder / "README.md"
    if not readme.is_file():
        problems.append(
            "README.md is missing: write the model card with `modeling_eat.hub.write_model_card(folder, ...)`."
        )
    elif not readme.read_text().startswith("---\n"):
        problems.append(
            "README.md has no YAML front matter, so the Hub will not know its pipeline or library: "
            "regenerate it with `modeling_eat.hub.write_model_card(folder, ...)`."
        )
    return problems


def publish_folder(
    folder,
    repo_id: str | None = None,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload EAT model",
) -> str:
    """
    Uploads a saved EAT folder to the Hub model repo `repo_id` (by default the folder's name, as its model card
    assumes), creating it if needed, and returns the commit URL.

    The folder is checked with `check_folder_for_hub` before anything is sent; Trainer leftovers matching
    `HUB_IGNORE_PATTERNS` (checkpoint-*/, runs/, ...) are not uploaded.
    """
    repo_id = repo_id or Path(folder).resolve().name
    problems = check_folder_for_hub(folder)
    if problems:
        raise ValueError(
            f"{folder} is not ready to publish as {repo_id}:\n" + "\n".join(f"- {problem}" for problem in problems)
        )
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_url.repo_id,
        folder_path=folder,
        commit_message=commit_message,
        ignore_patterns=HUB_IGNORE_PATTERNS,
    )
    return commit.commit_url


def _read_json(path: Path, fix: str):
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {fix}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): {fix}.") from error


def _metrics_of(eval_results: dict | None) -> dict[str, float]:
    metrics = {}
    for key, value in (eval_results or {}).items():
        name = key.removeprefix("eval_")
        if name not in _NON_METRIC_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name] = float(value)
    return metrics


def _eval_result_entries(metrics: dict[str, float], dataset: str | None, split: str) -> list[EvalResult]:
    # Local audiofolder data has no Hub id; the model-index still needs a dataset type.
    dataset_type = dataset or "audiofolder"
    return [
        EvalResult(
            task_type="audio-classification",
            task_name="Audio Classification",
            dataset_type=dataset_type,
            dataset_name=dataset or "local audiofolder data set",
            dataset_split=split,
            metric_type=name,
            metric_value=value,
            metric_name=_METRIC_DISPLAY_NAMES.get(name, name),
        )
        for name, value in metrics.items()
    ]


def _card_tags(is_classifier: bool, extra_tags: list[str] | None) -> list[str]:
    tags = ["audio", "eat", "custom_code"]
    tags.append("audio-classification" if is_classifier else "self-supervised-learning")
    return list(dict.fromkeys(tags + list(extra_tags or [])))


def _default_description(is_classifier: bool, is_pretraining: bool, num_labels: int) -> str:
    if is_classifier:
        return f"An EAT audio classifier over {num_labels} labels, fine-tuned from a self-supervised EAT encoder."
    if is_pretraining:
        return (
            "A self-supervised EAT checkpoint with everything needed to continue pre-training: the student "
            "encoder, its EMA teacher and the decoder."
        )
    return "A self-supervised pre-trained EAT encoder, for audio embeddings or as a starting point for fine-tuning."


def _intended_use(is_classifier: bool, is_pretraining: bool, num_labels: int) -> str:
    if is_classifier:
        return (
            f"Tag or classify short audio clips into the {num_labels} labels listed in `config.id2label`, or start "
            "a fine-tuning run on a related task from it."
        )
    use = (
        "Extract clip embeddings (the CLS token) or patch embeddings for downstream audio tasks, or fine-tune the "
        "encoder for audio classification; it has no classification head of its own."
    )
    if is_pretraining:
        use += " `AutoModelForPreTraining` loads the full pre-training state to continue the self-supervised run."
    return use


def _details_table(folder: Path, config: dict, preprocessor: dict | None, datasets: list[str] | None) -> str:
    rows = [("Architecture", ", ".join(config.get("architectures") or ["unknown"]))]
    hidden, layers = config.get("hidden_size"), config.get("num_hidden_layers")
    size = size_preset_of(config) or "custom"
    rows.append(
        (
            "Encoder",
            f"EAT-{size}: {layers} Transformer layers, hidden size {hidden}, "
            f"{config.get('num_attention_heads')} attention heads, "
            f"feed-forward size {config.get('intermediate_size')}",
        )
    )
    encoder_parameters, total_parameters = _parameter_counts(folder)
    if total_parameters:
        rows.append(
            ("Parameters", f"{encoder_parameters / 1e6:.3g} M in the encoder, {total_parameters / 1e6:.3g} M stored")
        )
    patch, mel_bins = config.get("patch_size"), config.get("num_mel_bins")
    rows.append(("Patches", f"{patch}x{patch} over {mel_bins} mel bins ({mel_bins // patch} frequency patches)"))
    if preprocessor is not None:
        frames = preprocessor.get("max_length")
        rows.append(
            (
                "Input",
                f"{preprocessor.get('sampling_rate')} Hz mono audio, {preprocessor.get('num_mel_bins')}-bin Kaldi "
                f"log-mel filterbank, padded or cut to {frames} frames ({frames_to_seconds(frames):g} s), normalized "
                f"with mean {preprocessor.get('mean')} and std {preprocessor.get('std')}",
            )
        )
    if CLASSIFICATION_ARCHITECTURE in (config.get("architectures") or []):
        problem_type = config.get("problem_type") or "single_label_classification"
        rows.append(("Labels", f"{len(config.get('id2label') or {})} ({problem_type})"))
        rows.append(("Pooling", f"{config.get('classifier_pooling')}, fc_norm: {config.get('use_fc_norm')}"))
    if PRETRAINING_ARCHITECTURE in (config.get("architectures") or []):
        rows.append(("Pre-training objective", str(config.get("pretraining_objective"))))
    if datasets:
        rows.append(("Training data", ", ".join(f"`{name}`" for name in datasets)))
    return "| | |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)


def _parameter_counts(folder: Path) -> tuple[int, int]:
    encoder = total = 0
    for weights in sorted(folder.glob("*.safetensors")):
        with safe_open(weights, framework="pt") as tensors:
            for name in tensors.keys():
                count = 1
                for dim in tensors.get_slice(name).get_shape():
                    count *= dim
                total += count
                if not name.startswith(_NON_ENCODER_PREFIXES):
                    encoder += count
    return encoder, total


def _results_section(metrics: dict[str, float], dataset: str | None, split: str) -> str:
    if not metrics:
        return "No evaluation results are recorded for this checkpoint."
    source = f"`{dataset}`" if dataset else "a local data set"
    rows = "\n".join(f"| {_METRIC_DISPLAY_NAMES.get(name, name)} | {value:.4f} |" for name, value in metrics.items())
    return f"Measured on the `{split}` split of {source}.\n\n| Metric | Value |\n|---|---|\n{rows}"


def _weight_problems(folder: Path) -> list[str]:
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        shards = sorted(set(json.loads(index_path.read_text()).get("weight_map", {}).values()))
        missing = [shard for shard in shards if not (folder / shard).is_file()]
        if missing:
            return [f"weight shards {', '.join(missing)} listed in model.safetensors.index.json are missing."]
        return []
    if (folder / "model.safetensors").is_file():
        return []
    if (folder / "pytorch_model.bin").is_file():
        return [
            "the weights are a pickled pytorch_model.bin: load the model and save it again with "
            "`save_pretrained`, which writes model.safetensors."
        ]
    return ["model.safetensors is missing: save the model with `model.save_pretrained(folder)`."]
