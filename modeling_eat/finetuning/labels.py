"""The classes of a label column (strings, integers, a ClassLabel, or lists of those for multi-label data) and how
its values become training targets."""

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..runtime import CommandError


@dataclasses.dataclass
class LabelSpec:
    """The classes of a label column and how its values become targets.

    Single-label values become class indices; multi-label values (lists) become multi-hot float vectors.
    """

    names: list[str]
    multi_label: bool
    # Column value -> class index, for the column's own values (names for strings, integers for ints, ClassLabel
    # indices for ClassLabel columns).
    index_of: dict[Any, int]

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.names)}

    @property
    def problem_type(self) -> str:
        return "multi_label_classification" if self.multi_label else "single_label_classification"

    def encode(self, value) -> int | list[float]:
        if not self.multi_label:
            return self.index_of[value]
        target = [0.0] * self.num_labels
        for item in value:
            target[self.index_of[item]] = 1.0
        return target

    def label_indices(self, values: Sequence) -> list[list[int]]:
        """The class indices of each row (one per row for single-label data)."""
        if self.multi_label:
            return [[self.index_of[item] for item in value] for value in values]
        return [[self.index_of[value]] for value in values]

    def check_covers(self, values: Sequence, split: str) -> None:
        items = (item for value in values for item in value) if self.multi_label else iter(values)
        unknown = sorted({str(item) for item in items if item not in self.index_of})
        if unknown:
            raise CommandError(
                f"The {split} split has labels the train split lacks: {unknown[:10]}"
                f"{' ...' if len(unknown) > 10 else ''}. The classifier only knows the train split's classes: add "
                "examples of them to the train split, or drop these rows."
            )


def _inner_feature(feature):
    # datasets' List / LargeList / Sequence all keep their item type in `.feature`.
    return getattr(feature, "feature", None) if not isinstance(feature, dict) else None


def build_label_spec(feature, values: Sequence, column: str = "label") -> LabelSpec:
    """Classes of a label column from its datasets feature and values: ClassLabel names, or the sorted unique
    strings or integers; a list column (of any of those) is multi-label."""
    from datasets import ClassLabel

    inner = _inner_feature(feature)
    multi_label = inner is not None
    item_feature = inner if multi_label else feature
    if isinstance(item_feature, ClassLabel):
        return LabelSpec(list(item_feature.names), multi_label, {i: i for i in range(item_feature.num_classes)})

    items = [item for value in values for item in value] if multi_label else list(values)
    if any(item is None for item in items):
        raise CommandError(f"The label column {column!r} has missing (None) values: drop or fill those rows first.")
    kinds = {type(item) for item in items}
    if not items:
        raise CommandError(f"The label column {column!r} is empty.")
    if kinds <= {int, np.int64, np.int32, bool} or kinds <= {str}:
        unique = sorted(set(items))
        if len(unique) < 2 and not multi_label:
            # One softmax output is always right: the loss is 0 from the first step and nothing is learnt.
            raise CommandError(
                f"The label column {column!r} holds a single class ({unique[0]!r}): a classifier needs at least two. "
                "Label clips of two classes or more (or give lists of labels, for multi-label tagging)."
            )
    else:
        raise CommandError(
            f"The label column {column!r} holds {sorted(k.__name__ for k in kinds)} values; labels must be strings, "
            "integers, a ClassLabel, or lists of those (multi-label). Pick the right column with --label_column_name."
        )
    return LabelSpec([str(item) for item in unique], multi_label, {item: i for i, item in enumerate(unique)})


__all__ = ["LabelSpec", "build_label_spec"]
