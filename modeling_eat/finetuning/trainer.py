"""The fine-tuning `Trainer` of EAT: layer-decay optimizer groups, the batch augmentations, the official losses
(`models/EAT_audio_classification.py`) and weighted sampling."""

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import Trainer
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import has_length

from ..optimization import layer_decay_parameter_groups
from ..runtime import CommandError, one_thread_per_worker, progress_interval
from .augmentations import mixup, noise_and_shift, spec_augment
from .data import SKIPPED_AUDIO, WeightedEpochSampler, decodable_rows
from .recipes import FinetuningRecipe


def loss_kind(recipe: FinetuningRecipe, multi_label: bool) -> str:
    """Which loss the official code uses: BCE for multi-label data; for single-label data cross-entropy (with label
    smoothing) without mixup, and under mixup `recipe.mixup_loss` (BCE for SPC-2)."""
    if multi_label:
        return "bce"
    return recipe.mixup_loss if recipe.mixup_alpha > 0 else "ce"


def classification_loss(
    logits: torch.Tensor, targets: torch.Tensor, kind: str, label_smoothing: float = 0.0
) -> torch.Tensor:
    """`targets` are class indices or float (soft, multi-hot) targets of shape `(batch, num_labels)`.

    BCE is summed over the classes and averaged over the clips, as the official SPC-2 loss (its AudioSet loss divides
    by the number of positive labels instead: a constant factor Adam mostly absorbs, but logged values differ).
    """
    logits = logits.float()
    if targets.dtype in (torch.long, torch.int):
        if kind == "ce":
            return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        targets = F.one_hot(targets, logits.shape[-1])
    targets = targets.float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1).mean()
    if kind == "soft_ce":
        return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    if kind == "ce":
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    raise ValueError(f"Unknown loss {kind!r}: 'ce', 'soft_ce' or 'bce'.")


class QuietProgressCallback(ProgressCallback):
    """The Trainer's progress bars, named, and redrawn at `progress_interval()`: every 30 s into a log file rather
    than ten times a second, each redraw another line of it."""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.training_bar = tqdm(
                total=state.max_steps, desc="fine-tuning", unit="step", dynamic_ncols=True,
                mininterval=progress_interval(),
            )
        self.current_step = 0

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if state.is_world_process_zero and self.prediction_bar is None and has_length(eval_dataloader):
            self.prediction_bar = tqdm(
                total=len(eval_dataloader), desc="evaluation", unit="batch", leave=self.training_bar is None,
                dynamic_ncols=True, mininterval=progress_interval(),
            )
        super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)


class EATFinetuningTrainer(Trainer):
    """Trainer with EAT's fine-tuning: layer-decay optimizer groups (by overriding `create_optimizer`, so `--optim`
    and the scheduler still work), the batch augmentations and loss (by overriding `compute_loss`) and, for weighted
    sampling, a `WeightedEpochSampler` (by overriding `_get_train_sampler`); its dataloader workers run one thread
    each (`modeling_eat.runtime.one_thread_per_worker`, before the Trainer's own worker seeding). Rows whose audio
    could not be decoded (`modeling_eat.finetuning.data.IGNORED_LABEL`) are left out of the training batch and of
    the evaluation loss, and their files are kept in `skipped_audio` for the run to list. Its progress bars are
    `QuietProgressCallback`'s."""

    # compute_loss returns a per-batch mean: the Trainer divides it by the gradient accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, recipe: FinetuningRecipe, sample_weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.label_smoothing_factor > 0:
            raise ValueError("Use --label_smoothing (EAT's own), not --label_smoothing_factor, with this script.")
        self.recipe = recipe
        self.sample_weights = sample_weights
        self.loss_kind = loss_kind(recipe, self.model.config.problem_type == "multi_label_classification")
        self.augment_rng = np.random.default_rng(self.args.seed + self.args.process_index)
        self.skipped_audio: list[str] = []
        if any(type(callback) is ProgressCallback for callback in self.callback_handler.callbacks):
            self.remove_callback(ProgressCallback)
            self.add_callback(QuietProgressCallback)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            groups = layer_decay_parameter_groups(
                opt_model, self.args.learning_rate, self.args.weight_decay, self.recipe.layer_decay
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _get_dataloader(self, *args, **kwargs):
        dataloader = super()._get_dataloader(*args, **kwargs)
        # accelerate's prepared loader iterates the DataLoader it wraps.
        loader = getattr(dataloader, "base_dataloader", dataloader)
        loader.worker_init_fn = partial(one_thread_per_worker, then=loader.worker_init_fn)
        return dataloader

    def _get_train_sampler(self, train_dataset=None):
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        return WeightedEpochSampler(self.sample_weights, self.recipe.samples_per_epoch, seed=self.args.seed)

    def augment(self, input_values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recipe, rng = self.recipe, self.augment_rng
        if recipe.noise_augment:
            input_values = noise_and_shift(input_values, rng)
        targets = labels
        if recipe.mixup_alpha > 0:
            if labels.dtype in (torch.long, torch.int):
                targets = F.one_hot(labels, self.model.config.num_labels).float()
            input_values, targets, _ = mixup(input_values, targets, recipe.mixup_alpha, recipe.mixup_prob, rng)
        return spec_augment(input_values, recipe.specaug_ratio, rng), targets

    def take_skipped_audio(self, inputs) -> dict:
        """The batch without its list of undecodable files, which joins `skipped_audio`."""
        inputs = dict(inputs)
        for name in inputs.pop(SKIPPED_AUDIO, None) or ():
            if name not in self.skipped_audio:
                self.skipped_audio.append(name)
        return inputs

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        return super().prediction_step(model, self.take_skipped_audio(inputs), prediction_loss_only, ignore_keys)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = self.take_skipped_audio(inputs)
        labels = inputs.pop("labels")
        decodable = decodable_rows(labels)
        if model.training:
            if not decodable.all():
                if not decodable.any():
                    raise CommandError(
                        "no clip of a training batch could be decoded (the warnings above name the files): check "
                        "--audio_column_name and the data set's files."
                    )
                inputs = {name: value[decodable] for name, value in inputs.items()}
                labels = labels[decodable]
            inputs["input_values"], targets = self.augment(inputs["input_values"], labels)
            smoothing = self.recipe.label_smoothing
            outputs = model(**inputs)
            loss = classification_loss(outputs.logits, targets, self.loss_kind, smoothing)
        else:
            # The evaluation keeps every row, so that the logits line up with the labels the metrics get.
            outputs = model(**inputs)
            loss = classification_loss(outputs.logits[decodable], labels[decodable], self.loss_kind)
        return (loss, outputs) if return_outputs else loss


__all__ = ["EATFinetuningTrainer", "QuietProgressCallback", "classification_loss", "loss_kind"]
