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
`publish_folder` uploads it once, after training.

`--num_threads` sets torch's intra-op threads; by default they follow the CPUs free for this process when it starts
(`modeling_eat.runtime`). Without a GPU, `--dataloader_pin_memory` is switched off (there is nothing to pin for).
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed

from ..audio import load_feature_extractor
from ..configuration_eat import SIZE_PRESETS, EATConfig
from ..hub import publish_folder, write_model_card
from ..modeling_eat import EATForAudioClassification
from ..runtime import (
    configure_threads,
    deepspeed_requested,
    import_deepspeed_only_when_used,
    pin_memory_helps,
)
from .data import DataTrainingArguments, prepare_datasets
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


def parse_finetune_arguments(argv: list[str]):
    parser = HfArgumentParser(
        (ModelArguments, DataTrainingArguments, FinetuningArguments, TrainingArguments, RuntimeArguments)
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
    if model_args.config_name is None and model_args.model_name_or_path is None:
        raise ValueError(
            "Give --model_name_or_path (a checkpoint to fine-tune) or --config_name (to train from scratch)."
        )
    if model_args.config_name is not None:
        config = EATConfig.from_name_or_path(model_args.config_name)
    else:
        config = EATConfig.from_pretrained(model_args.model_name_or_path, **hub)
    for name, value in head.items():
        setattr(config, name, value)
    config.validate_architecture()
    if model_args.model_name_or_path is None:
        return EATForAudioClassification(config)
    return EATForAudioClassification.from_pretrained(
        model_args.model_name_or_path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **hub
    )


def finetune_main(argv: list[str] | None = None):
    model_args, data_args, finetuning_args, training_args, runtime_args = parse_finetune_arguments(
        sys.argv[1:] if argv is None else argv
    )
    thread_choice = configure_threads(runtime_args.num_threads)

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    logging.getLogger("modeling_eat").setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info(f"torch runs {thread_choice}")
    import_deepspeed_only_when_used(bool(training_args.deepspeed) or deepspeed_requested())
    if training_args.dataloader_pin_memory and not pin_memory_helps():
        training_args.dataloader_pin_memory = False

    if not (training_args.do_train or training_args.do_eval):
        training_args.do_train = training_args.do_eval = True
    # The transforms read the audio and label columns, which the Trainer would otherwise drop first.
    training_args.remove_unused_columns = False
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
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
    logger.info(f"Fine-tuning recipe {finetuning_args.recipe or 'none (small-data defaults)'}: {recipe}")
    # The recipe's statistics and length, from here on for training, the saved folder and the pipeline.
    feature_extractor.mean, feature_extractor.std = recipe.norm_mean, recipe.norm_std
    feature_extractor.max_length = recipe.target_length

    train_dataset, eval_dataset, label_spec, sample_weights = prepare_datasets(
        data_args, feature_extractor, recipe, sample_weights_file=finetuning_args.sample_weights_file,
        seed=training_args.seed, cache_dir=model_args.cache_dir, token=model_args.token,
        need_train=training_args.do_train,
    )
    if training_args.do_eval and eval_dataset is None:
        raise ValueError(
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
        recipe=recipe,
        sample_weights=sample_weights,
    )

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
        base_model = model_args.model_name_or_path
        dataset = data_args.dataset_name
        write_model_card(
            training_args.output_dir,
            base_model=base_model if base_model is not None and not Path(base_model).exists() else None,
            datasets=[dataset if not Path(dataset).exists() else Path(dataset).name],
            eval_results=eval_metrics,
            model_id=training_args.hub_model_id if push_to_hub else None,
        )
        if push_to_hub:
            url = publish_folder(
                training_args.output_dir,
                training_args.hub_model_id,
                token=training_args.hub_token,
                private=bool(training_args.hub_private_repo),
                commit_message="Fine-tuned EAT",
            )
            logger.info(f"Published {training_args.output_dir} to {url}")
        if eval_metrics is not None:
            for path in write_evaluation_reports(metrics_fn, training_args.output_dir):
                logger.info(f"Wrote {path}")
    return eval_metrics

