"""An exported classifier graph in the place of `EATForAudioClassification`, for `pipeline("audio-classification")`.

    from transformers import pipeline
    from modeling_eat.deployment.graph_model import ExportedEATClassifier

    model = ExportedEATClassifier.from_pretrained("eat-esc50-onnx")                 # model.onnx
    model = ExportedEATClassifier.from_pretrained("eat-esc50-onnx", graph="model_int8.onnx")
    classify = pipeline("audio-classification", model=model, feature_extractor=model.feature_extractor)
    classify("long.wav", chunk_length_s=10, return_timeline=True)

The pipeline keeps everything it does for the PyTorch model (reading and resampling, windows, batches, aggregation,
timeline, smoothing): only the forward pass runs the graph. That needs a spectrogram graph (`input_values ->
logits`, exported without `--with_feature_extractor`): the pipeline computes each window's fbank itself, padded to
the window's length, which a waveform graph would do its own way.
"""

import json
import logging
from pathlib import Path

import numpy as np
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from ..configuration_eat import EATConfig
from ..feature_extraction_eat import EATFeatureExtractor
from .export import GRAPH_FILES, REPORT_FILE, load_graph


logger = logging.getLogger(__name__)


class ExportedEATClassifier:
    """Runs an exported `input_values -> logits` graph (ONNX or torch.export) with the interface the pipeline uses
    of a model: `config`, `device`, `dtype`, `main_input_name`, and a call returning an output with `logits`."""

    main_input_name = "input_values"
    input_modalities = ("audio",)

    def __init__(self, graph_path, config: EATConfig, feature_extractor: EATFeatureExtractor | None = None,
                 num_threads: int | None = None):
        self.graph_path = Path(graph_path)
        self.config = config
        self.feature_extractor = feature_extractor
        self.run = load_graph(self.graph_path, num_threads=num_threads)
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    @classmethod
    def from_pretrained(cls, folder, graph: str | None = None, num_threads: int | None = None):
        """The graph of an export folder (by default the one `export.json` names) with its config and feature
        extractor. `num_threads=None` chooses ONNX Runtime's threads by the package's rule (`sessions`)."""
        folder = Path(folder)
        report_path = folder / REPORT_FILE
        if not report_path.is_file():
            raise FileNotFoundError(
                f"{folder} has no {REPORT_FILE}: pass a folder written by `python -m modeling_eat.export`."
            )
        report = json.loads(report_path.read_text())
        if report["input"]["name"] != cls.main_input_name:
            raise ValueError(
                f"{folder / report['graph']} takes a {report['input']['name']!r}, but the pipeline computes each "
                "window's fbank itself and hands over `input_values`: export the model without "
                "--with_feature_extractor for use in the pipeline."
            )
        if report.get("id2label") is None:
            raise ValueError(f"{folder} holds an encoder's graph; the pipeline needs a classifier's (logits).")
        graph_path = folder / (graph or report["graph"])
        if not graph_path.is_file():
            raise FileNotFoundError(f"{graph_path} does not exist; the folder has {sorted(GRAPH_FILES.values())} "
                                    "and, after --quantize, model_int8.onnx.")
        config = EATConfig.from_pretrained(folder)
        return cls(graph_path, config, EATFeatureExtractor.from_pretrained(folder), num_threads)

    def __call__(self, input_values: torch.Tensor, **kwargs) -> SequenceClassifierOutput:
        array = input_values.detach().to("cpu", torch.float32).numpy()
        (logits,) = self.run(np.ascontiguousarray(array))
        return SequenceClassifierOutput(logits=torch.from_numpy(np.asarray(logits)))

    def to(self, device=None, *args, **kwargs):
        if isinstance(device, (str, torch.device)) and torch.device(device).type != "cpu":
            raise ValueError(f"{self.graph_path.name} runs on the CPU (ONNX Runtime's CPU provider), not {device}.")
        return self

    def eval(self):
        return self

    def can_generate(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.graph_path})"


__all__ = ["ExportedEATClassifier"]
