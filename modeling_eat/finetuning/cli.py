"""Fine-tune EAT for audio classification with the Trainer (the layout of transformers'
`run_audio_classification.py`, with the recipes of the paper's fine-tuning runs).

    python -m modeling_eat.finetune --model_name_or_path FOLDER_OR_HUB_ID --dataset_name DATA \
        --recipe esc50 --output_dir out --do_train --do_eval

`--model_name_or_path` takes an EATForAudioClassification checkpoint, a converted official one, or a pre-training
output folder (EATForPreTraining: its student encoder is loaded, the head is new). `--config_name` (a size preset:
tiny, small, base or large; or a config JSON or folder) without it trains from scratch. `--dataset_name` is a Hub id
or a local audiofolder with train/ and test/ (or validation/). With neither --do_train nor --do_eval, both run.

`--recipe` sets everything of an official run (clip length, normalisation, augmentations, loss, layer decay, drop
path and the optimizer/schedule/batch/steps); each flag given on the command line (or in the JSON) wins over it.
Without a recipe, settings for a small custom data set apply (see `modeling_eat.finetuning.recipes.DEFAULT_RECIPE`).

`--push_to_hub` is this script's: TrainingArguments' own upload is switched off so that the card is
`modeling_eat.hub.write_model_card`'s and the folder is checked (code files, auto_map) before
`publish_folder` uploads it once, after training and the evaluation pictures. The Hub token is checked before
training starts, as are the data set's name, the model, and `--output_dir` (writable; a folder holding another run
is refused unless `--overwrite_output_dir`, or `--resume_from_checkpoint` continues that run), so that none of
these fails after the work. Clips that cannot be decoded are skipped and listed at the end, as in pre-training.
The console shows the progress, the losses and the results; the libraries' details go to `command.log` in
`--output_dir`.

`--num_threads` sets torch's intra-op threads; by default they follow the CPUs free for this process when it starts
(`modeling_eat.runtime`). Without a GPU, `--dataloader_pin_memory` is switched off (there is nothing to pin for).
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer import TRAINER_STATE_NAME

from ..audio import check_dataset_name, load_feature_extractor, skipped_audio_message
from ..configuration_eat import SIZE_PRESETS, EATConfig
from ..hub import check_config_source, check_hub_access, check_model_source, publish_folder, write_model_card
from ..loading_eat import task_part_of
from ..modeling_eat import EATForAudioClassification
from ..optimization import bad_number
from ..outputs import COMMAND_LOG_FILE, check_output_folder, check_writable, remove_run_files, same_folder
from ..runtime import (
    FILE_ONLY,
    CommandError,
    configure_logging,
    configure_threads,
    deepspeed_requested,
    import_deepspeed_only_when_used,
    log_to_file,
    one_line_errors,
    pin_memory_helps,
)
from .data import ClassificationCollator, DataTrainingArguments, prepare_datasets
from .metrics import ClassificationMetrics, write_evaluation_reports
from .recipes import FinetuningArguments, get_recipe, resolve_recipe
from .trainer import EATFinetuningTrainer


logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "EAT checkpoint (classifier, converted official, or pre-training folder)."}
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": f"Size preset ({', '.join(SIZE_PRESETS)}) or config JSON/folder, to train from scratch."},
    )
    feature_extractor_name: str | None = field(
        default=None, metadata={"help": "Feature extractor folder, if not the checkpoint's."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Cache for Hub downloads and data sets."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the checkpoint."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private checkpoints or data."})
    freeze_feature_encoder: bool = field(default=False, metadata={"help": "Freeze the patch embedding."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Replace a checkpoint's head of another size (e.g. AudioSet's 527 classes)."}
    )


@dataclass
class RuntimeArguments:
    num_threads: int | None = field(
        default=None,
        metadata={"help": "torch intra-op threads (default: the CPUs free for this process at start, see README)."},
    )
    # transformers 5 dropped TrainingArguments' flag of this name; the scripts of this package keep its meaning.
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace the model and results of another run in --output_dir (those files are deleted "
                          "before training, nothing else) instead of refusing to start."},
    )


def parse_finetune_arguments(argv: list[str]):
    # Named as the other commands name themselves (argparse would take the name of whichever file started Python).
    parser = HfArgumentParser(
        (ModelArguments, DataTrainingArguments, FinetuningArguments, TrainingArguments, RuntimeArguments),
        prog="python -m modeling_eat.finetune",
    )
    if len(argv) == 1 and argv[0].endswith(".json"):
        values = json.loads(Path(argv[0]).read_text())
        # The recipe's TrainingArguments values sit under the keys the file gives.
        return parser.parse_dict({**get_recipe(values.get("recipe")).training, **values})
    # A first pass finds the recipe; its TrainingArguments values then become the parser's defaults, so that the
    # flags actually given win over them and the others take them.
    finetuning_args = parser.parse_args_into_dataclasses(args=argv)[2]
    parser.set_defaults(**get_recipe(finetuning_args.recipe).training)
    return parser.parse_args_into_dataclasses(args=argv)


def hub_options(model_args: ModelArguments) -> dict:
    return {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token}


def check_model_given(model_args: ModelArguments) -> None:
    if model_args.config_name is None and model_args.model_name_or_path is None:
        raise CommandError(
            "neither --model_name_or_path nor --config_name is given: pass --model_name_or_path (a checkpoint to "
            "fine-tune) or --config_name (a size preset such as tiny or base, to train from scratch)."
        )


def check_training_numbers(training_args: TrainingArguments) -> None:
    """Numbers the Trainer takes as they are and that end in a traceback from its DataLoader or AdamW once the data
    and the model are loaded."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training_args, name) < 1:
            raise CommandError(f"--{name} must be >= 1, got {getattr(training_args, name)}: pass a positive count.")
    if problem := bad_number(training_args):
        raise CommandError(f"{problem}: pass a number in that range.")


def build_model(model_args: ModelArguments, label_spec, recipe) -> EATForAudioClassification:
    head = {
        "num_labels": label_spec.num_labels,
        "id2label": label_spec.id2label,
        "label2id": label_spec.label2id,
        "problem_type": label_spec.problem_type,
        "finetuning_task": "audio-classification",
        "drop_path_rate": recipe.drop_path_rate,
        "max_length": recipe.target_length,
    }
    hub = hub_options(model_args)
    check_model_given(model_args)
    if model_args.config_name is not None:
        config = EATConfig.from_name_or_path(model_args.config_name)
    else:
        config = EATConfig.from_pretrained(model_args.model_name_or_path, **hub)
    for name, value in head.items():
        setattr(config, name, value)
    config.validate_architecture()
    if model_args.model_name_or_path is None:
        return EATForAudioClassification(config)
    return load_for_finetuning(
        model_args.model_name_or_path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **hub
    )


class _Records(logging.Handler):
    """Keeps the records it is handed, for a caller to decide where they go."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def load_for_finetuning(model_name_or_path: str, **kwargs) -> EATForAudioClassification:
    """`EATForAudioClassification.from_pretrained`, with the loader's warnings about parts that only another task
    uses (the head it initialises, a pre-training folder's teacher and decoder) sent to the log file: training the
    new head is what fine-tuning does. One console line says what is new; any other warning stays a warning."""
    # The package's logger: the loader's warnings come from its core modules.
    loader_logger = logging.getLogger("modeling_eat")
    captured, propagate = _Records(), loader_logger.propagate
    loader_logger.addHandler(captured)
    loader_logger.propagate = False
    try:
        model, loading_info = EATForAudioClassification.from_pretrained(
            model_name_or_path, output_loading_info=True, **kwargs
        )
    finally:
        loader_logger.removeHandler(captured)
        loader_logger.propagate = propagate
    expected = all(task_part_of(key) for key in loading_info["missing_keys"] | loading_info["unexpected_keys"])
    for record in captured.records:
        if expected:
            record.file_only = True
        loader_logger.handle(record)
    new_parts = sorted({task_part_of(key) for key in loading_info["missing_keys"] if task_part_of(key)})
    if expected and new_parts:
        logger.info(f"{model_name_or_path}: {', '.join(new_parts)} is new, and this run trains it")
    return model


def check_before_training(model_args, data_args, training_args, runtime_args, push_to_hub: bool) -> list[Path]:
    """What would otherwise fail after training, or leave a folder behind, checked in seconds before it: the data
    set's name, the model or config, `--output_dir` (not the model's own folder, not another run's unless
    `--overwrite_output_dir` or `--resume_from_checkpoint`, writable) and the Hub token for `--push_to_hub`. Returns
    the old run's files that `--overwrite_output_dir` deletes once training is ready to start."""
    check_dataset_name(data_args.dataset_name)
    check_model_given(model_args)
    check_training_numbers(training_args)
    hub = hub_options(model_args)
    if model_args.config_name is not None:
        check_config_source(model_args.config_name, **hub)
    if model_args.model_name_or_path is not None:
        check_model_source(model_args.model_name_or_path, **hub)
        if same_folder(model_args.model_name_or_path, training_args.output_dir):
            raise CommandError(
                f"--output_dir {training_args.output_dir} is the folder of --model_name_or_path: the fine-tuned model "
                "would replace the one it starts from; choose another --output_dir."
            )
    resume = training_args.resume_from_checkpoint
    if resume is not None and not (Path(resume) / TRAINER_STATE_NAME).is_file():
        raise CommandError(
            f"--resume_from_checkpoint {resume} is not a checkpoint of a fine-tuning run (no {TRAINER_STATE_NAME} "
            "there): pass a checkpoint-N folder this command wrote in its --output_dir (--save_strategy steps)."
        )
    stale = []
    if training_args.resume_from_checkpoint is None:
        stale = check_output_folder(
            training_args.output_dir, runtime_args.overwrite_output_dir,
            alternatives=", --resume_from_checkpoint to continue its run from a checkpoint-* folder",
        )
    check_writable(training_args.output_dir)
    if push_to_hub:
        check_hub_access(training_args.hub_token or model_args.token)
    return stale


@one_line_errors
def finetune_main(argv: list[str] | None = None):
    model_args, data_args, finetuning_args, training_args, runtime_args = parse_finetune_arguments(
        sys.argv[1:] if argv is None else argv
    )
    log_level = training_args.get_process_log_level()
    if training_args.should_log and training_args.log_level == "passive":
        log_level = logging.INFO
    configure_logging(log_level)
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    stale = check_before_training(model_args, data_args, training_args, runtime_args, push_to_hub)
    configure_threads(runtime_args.num_threads)  # logs its choice
    import_deepspeed_only_when_used(bool(training_args.deepspeed) or deepspeed_requested())
    if training_args.dataloader_pin_memory and not pin_memory_helps():
        training_args.dataloader_pin_memory = False

    if not (training_args.do_train or training_args.do_eval):
        training_args.do_train = training_args.do_eval = True
    # The transforms read the audio and label columns, which the Trainer would otherwise drop first.
    training_args.remove_unused_columns = False
    set_seed(training_args.seed)

    feature_extractor = load_feature_extractor(
        model_args.feature_extractor_name, model_args.model_name_or_path, **hub_options(model_args)
    )
    recipe = resolve_recipe(
        finetuning_args,
        pretrained=model_args.model_name_or_path is not None,
        base_feature_extractor=feature_extractor,
        max_length_seconds=data_args.max_length_seconds,
    )
    logger.info(f"fine-tuning recipe: {finetuning_args.recipe or 'none (small-data defaults)'}")
    logger.info(f"every setting of the recipe: {recipe}", extra=FILE_ONLY)
    # The recipe's statistics and length, from here on for training, the saved folder and the pipeline.
    feature_extractor.mean, feature_extractor.std = recipe.norm_mean, recipe.norm_std
    feature_extractor.max_length = recipe.target_length

    train_dataset, eval_dataset, label_spec, sample_weights = prepare_datasets(
        data_args, feature_extractor, recipe, sample_weights_file=finetuning_args.sample_weights_file,
        seed=training_args.seed, cache_dir=model_args.cache_dir, token=model_args.token,
        need_train=training_args.do_train,
    )
    if training_args.do_eval and eval_dataset is None:
        raise CommandError(
            f"{data_args.dataset_name} has neither a 'test' nor a 'validation' split: set --eval_split_name."
        )

    model = build_model(model_args, label_spec, recipe)
    if model_args.freeze_feature_encoder:
        model.freeze_feature_encoder()

    metrics_fn = ClassificationMetrics(label_spec)
    trainer = EATFinetuningTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if training_args.do_eval else None,
        compute_metrics=metrics_fn,
        processing_class=feature_extractor,
        data_collator=ClassificationCollator(),
        recipe=recipe,
        sample_weights=sample_weights,
    )
    # Only now, with the data, the model and the trainer ready, does the run touch its folder.
    if trainer.is_world_process_zero():
        if stale:
            logger.info(f"--overwrite_output_dir: deleting {', '.join(path.name for path in stale)}")
            remove_run_files(stale)
        log_to_file(Path(training_args.output_dir) / COMMAND_LOG_FILE)

    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
    else:
        trainer.save_model()

    eval_metrics = None
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)

    if trainer.is_world_process_zero():
        if trainer.skipped_audio:
            logger.warning(skipped_audio_message(trainer.skipped_audio))
        base_model = model_args.model_name_or_path
        dataset = data_args.dataset_name
        write_model_card(
            training_args.output_dir,
            base_model=base_model if base_model is not None and not Path(base_model).exists() else None,
            datasets=[dataset if not Path(dataset).exists() else Path(dataset).name],
            eval_results=eval_metrics,
            model_id=training_args.hub_model_id if push_to_hub else None,
        )
        # The pictures before the upload, so that the published folder holds them.
        if eval_metrics is not None:
            for path in write_evaluation_reports(metrics_fn, training_args.output_dir):
                logger.info(f"Wrote {path}")
        if push_to_hub:
            url = publish_folder(
                training_args.output_dir,
                training_args.hub_model_id,
                token=training_args.hub_token or model_args.token,
                private=bool(training_args.hub_private_repo),
                commit_message="Fine-tuned EAT",
            )
            logger.info(f"Published {training_args.output_dir} to {url}")
    return eval_metrics

