"""Fine-tuning metrics without the Hub: accuracy or mAP with scikit-learn, per-class AP, and the evaluation
reports (confusion matrix, AP bars) written beside a fine-tuned model."""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..metrics import accuracy, mean_average_precision
from .data import decodable_rows
from .labels import LabelSpec


logger = logging.getLogger(__name__)


class ClassificationMetrics:
    """`compute_metrics` for the Trainer: accuracy (single-label) or mAP (multi-label), with scikit-learn.

    Not `evaluate`: `evaluate.load("accuracy")` fetches the metric script from the Hub at run time and fails offline.
    The last evaluation's predictions stay on the object for `write_evaluation_reports`.
    """

    def __init__(self, label_spec: LabelSpec):
        self.label_spec = label_spec
        self.last: dict[str, np.ndarray] = {}

    def __call__(self, eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        labels = np.asarray(eval_prediction.label_ids)
        # Clips that could not be decoded are in the evaluation only as placeholders.
        decodable = decodable_rows(labels)
        logits, labels = np.asarray(logits)[decodable], labels[decodable]
        if self.label_spec.multi_label:
            mean_ap, per_class = mean_average_precision(labels, logits)
            self.last = {"per_class_ap": per_class}
            return {"map": mean_ap}
        predictions = np.argmax(logits, axis=-1)
        self.last = {"y_true": labels, "y_pred": predictions}
        return {"accuracy": accuracy(labels, logits)}


def write_per_class_ap(path: str | Path, per_class_ap: np.ndarray, names: Sequence[str]) -> None:
    lines = ["index\tlabel\taverage_precision"]
    lines += [f"{index}\t{name}\t{ap:.6f}" for index, (name, ap) in enumerate(zip(names, per_class_ap))]
    Path(path).write_text("\n".join(lines) + "\n")


def write_evaluation_reports(metrics: ClassificationMetrics, output_dir: str | Path) -> list[Path]:
    """After an evaluation: `per_class_ap.tsv` for multi-label data, plus the plots `modeling_eat.plotting` offers
    (a confusion matrix, an AP bar chart) when that module and matplotlib are installed. Returns the files written."""
    output_dir = Path(output_dir)
    names = metrics.label_spec.names
    written = []
    if "per_class_ap" in metrics.last:
        write_per_class_ap(output_dir / "per_class_ap.tsv", metrics.last["per_class_ap"], names)
        written.append(output_dir / "per_class_ap.tsv")
    try:
        from .. import plotting  # needs matplotlib; the plots are extras
    except ImportError as error:
        logger.info(f"No evaluation plots: {error}")
        return written
    if "per_class_ap" in metrics.last:
        plotting.plot_average_precision(metrics.last["per_class_ap"], names, output_dir / "per_class_ap.png")
        written.append(output_dir / "per_class_ap.png")
    if "y_pred" in metrics.last:
        true_names = [names[index] for index in metrics.last["y_true"]]
        predicted_names = [names[index] for index in metrics.last["y_pred"]]
        plotting.plot_confusion_matrix(true_names, predicted_names, names, output_dir / "confusion_matrix.png")
        written.append(output_dir / "confusion_matrix.png")
    return written


__all__ = ["ClassificationMetrics", "mean_average_precision", "write_evaluation_reports", "write_per_class_ap"]
