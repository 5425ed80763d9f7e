"""The fine-tuning `Trainer` of EAT: layer-decay optimizer groups, the batch augmentations, the official losses
(`models/EAT_audio_classification.py`) and weighted sampling."""

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer

from ..optimization import layer_decay_parameter_groups
from ..runtime import one_thread_per_worker
from .augmentations import mixup, noise_and_shift, spec_augment
from .data import WeightedEpochSampler
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


class EATFinetuningTrainer(Trainer):
    """Trainer with EAT's fine-tuning: layer-decay optimizer groups (by overriding `create_optimizer`, so `--optim`
    and the scheduler still work), the batch augmentations and loss (by overriding `compute_loss`) and, for weighted
    sampling, a `WeightedEpochSampler` (by overriding `_get_train_sampler`); its dataloader workers run one thread
    each (`modeling_eat.runtime.one_thread_per_worker`, before the Trainer's own worker seeding)."""

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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        if model.training:
            inputs["input_values"], targets = self.augment(inputs["input_values"], labels)
            smoothing = self.recipe.label_smoothing
        else:
            targets, smoothing = labels, 0.0
        outputs = model(**inputs)
        loss = classification_loss(outputs.logits, targets, self.loss_kind, smoothing)
        return (loss, outputs) if return_outputs else loss


__all__ = ["EATFinetuningTrainer", "classification_loss", "loss_kind"]
