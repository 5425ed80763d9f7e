"""Exporting a saved EAT folder to one graph file (ONNX or torch.export), checked against eager PyTorch.

The time axis is dynamic: `input_values` of any whole number of patch rows up to the positional table, or a
`waveform` of any length up to what the table holds; the batch axis is dynamic too. After exporting, the graph is run
on clips of `CHECK_SECONDS` and compared with the eager model (and `EATFeatureExtractor`); a difference above
`TOLERANCE` fails the export. ONNX graphs run with ONNX Runtime, the reference runtime (`pip install
modeling-eat[onnx]`).
"""

import contextlib
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from ..audio import seconds_to_samples
from ..feature_extraction_eat import EATFeatureExtractor, kaldi_num_samples, seconds_to_patch_frames
from ..hub import check_model_source
from ..outputs import same_folder
from .graphs import SpectrogramGraph, WaveformGraph, eager_outputs, output_names
from .sessions import onnx_session


FORMATS = ("onnx", "torch_export")
GRAPH_FILES = {"onnx": "model.onnx", "torch_export": "model.pt2"}
REPORT_FILE = "export.json"
# Largest |exported - eager| accepted on the outputs, in float32.
TOLERANCE = 1e-4
CHECK_SECONDS = (1.0, 10.0)
# The exporters specialise an axis of size 0 or 1, so the examples have two clips and the shortest waveform two frames.
EXAMPLE_BATCH_SIZE = 2
MIN_WAVEFORM_FRAMES = 2


def holds_classifier(model_name_or_path: str) -> bool:
    """Whether the folder's config names a classifier (else its encoder is what gets exported). A path that does not
    exist, or a folder of another model, is refused in one line (`check_model_source`)."""
    config = check_model_source(model_name_or_path)
    return "EATForAudioClassification" in (config.get("architectures") or [])


def load_exportable_model(model_name_or_path: str):
    """The folder's classifier if it holds one, else its encoder, in float32 eval mode; and its feature extractor."""
    from transformers import AutoModel, AutoModelForAudioClassification

    auto_class = AutoModelForAudioClassification if holds_classifier(model_name_or_path) else AutoModel
    model = auto_class.from_pretrained(model_name_or_path, dtype=torch.float32).eval()
    try:
        feature_extractor = EATFeatureExtractor.from_pretrained(model_name_or_path)
    except OSError as error:
        raise ValueError(
            f"{model_name_or_path} has no preprocessor_config.json, which the export needs for the input's length and "
            "normalisation: save the feature extractor into it (`EATFeatureExtractor.from_preset(...).save_pretrained"
            "(folder)`)."
        ) from error
    return model, feature_extractor


def input_name(with_feature_extractor: bool) -> str:
    return "waveform" if with_feature_extractor else "input_values"


def build_graph(model, feature_extractor: EATFeatureExtractor, with_feature_extractor: bool) -> torch.nn.Module:
    graph = WaveformGraph(model, feature_extractor) if with_feature_extractor else SpectrogramGraph(model)
    return graph.eval()


def example_input(model, feature_extractor: EATFeatureExtractor, with_feature_extractor: bool, seconds: float = 2.0):
    """A random input of `seconds` (rounded to whole patch rows for spectrograms), of `EXAMPLE_BATCH_SIZE` clips."""
    generator = torch.Generator().manual_seed(0)
    if with_feature_extractor:
        num_samples = seconds_to_samples(seconds, feature_extractor.sampling_rate)
        return 0.1 * torch.randn(EXAMPLE_BATCH_SIZE, num_samples, generator=generator)
    patch_size = model.config.patch_size
    num_frames = max(patch_size, seconds_to_patch_frames(seconds, patch_size))
    return torch.randn(EXAMPLE_BATCH_SIZE, num_frames, model.config.num_mel_bins, generator=generator)


def dynamic_shapes(model, feature_extractor: EATFeatureExtractor, with_feature_extractor: bool) -> dict:
    config = model.config
    batch = torch.export.Dim("batch", min=1, max=4096)
    if with_feature_extractor:
        sampling_rate = feature_extractor.sampling_rate
        samples = torch.export.Dim(
            "samples",
            min=kaldi_num_samples(MIN_WAVEFORM_FRAMES, sampling_rate),
            max=kaldi_num_samples(config.max_input_frames, sampling_rate),
        )
        return {"waveform": {0: batch, 1: samples}}
    rows = torch.export.Dim("time_patches", min=1, max=config.max_time_patches)
    return {"input_values": {0: batch, 1: config.patch_size * rows}}


def save_graph(graph: torch.nn.Module, example: torch.Tensor, shapes: dict, graph_format: str, path: Path) -> None:
    name = next(iter(shapes))
    if graph_format == "torch_export":
        torch.export.save(torch.export.export(graph, (example,), dynamic_shapes=shapes), path)
        return
    with _exporter_quiet():
        program = torch.onnx.export(
            graph,
            (example,),
            input_names=[name],
            output_names=output_names(graph.model),
            dynamic_shapes=shapes,
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))


@contextlib.contextmanager
def _exporter_quiet():
    """Without the ONNX exporter's notes that concern neither EAT nor the user: that torchvision's detection ops
    are not registered (the graph has none), and a deprecation inside torch's own pytree code."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def load_graph(path, num_threads: int | None = None, spinning: bool = False):
    """A function from an input array to the list of output arrays, for a saved `.onnx` (ONNX Runtime on the CPU,
    with the package's session options: `sessions.session_options`) or `.pt2` (torch.export) graph."""
    path = Path(path)
    if path.suffix == ".onnx":
        session = onnx_session(path, num_threads, spinning)
        name = session.get_inputs()[0].name

        def run_onnx(inputs):
            return session.run(None, {name: np.ascontiguousarray(np.asarray(inputs, dtype=np.float32))})

        return run_onnx
    module = torch.export.load(str(path)).module()

    def run_exported(inputs):
        with torch.no_grad():
            outputs = module(torch.as_tensor(np.asarray(inputs, dtype=np.float32)))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [output.numpy() for output in outputs]

    return run_exported


def largest_export_difference(run, model, feature_extractor, with_feature_extractor: bool, seconds: float) -> float:
    """max |exported - eager| over all outputs on a random input of `seconds`."""
    inputs = example_input(model, feature_extractor, with_feature_extractor, seconds)
    expected = eager_outputs(model, feature_extractor if with_feature_extractor else None, inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    actual = run(inputs.numpy())
    return max(float(np.abs(got - want.numpy()).max()) for got, want in zip(actual, expected))


def export(
    model_name_or_path: str,
    output_dir,
    graph_format: str = "onnx",
    with_feature_extractor: bool = False,
    check_seconds=CHECK_SECONDS,
) -> dict:
    """Exports the folder's model to `output_dir/model.onnx` or `model.pt2`, checks it, and writes `export.json`
    (input and outputs, sampling rate, the checks) beside config.json and preprocessor_config.json. Returns the
    report."""
    if graph_format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {graph_format!r}")
    output_dir = Path(output_dir)
    model, feature_extractor = load_exportable_model(model_name_or_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    graph = build_graph(model, feature_extractor, with_feature_extractor)
    shapes = dynamic_shapes(model, feature_extractor, with_feature_extractor)
    path = output_dir / GRAPH_FILES[graph_format]
    save_graph(graph, example_input(model, feature_extractor, with_feature_extractor), shapes, graph_format, path)
    run = load_graph(path)
    checks = {
        f"{seconds:g}s": largest_export_difference(run, model, feature_extractor, with_feature_extractor, seconds)
        for seconds in check_seconds
    }
    failed = {length: difference for length, difference in checks.items() if not difference <= TOLERANCE}
    if failed:
        raise RuntimeError(
            f"the exported graph {path} differs from eager PyTorch by more than {TOLERANCE} on {failed}: it is not "
            "a faithful export; report it with the model's config.json."
        )
    # An export into the model's own folder leaves its files where they are.
    if not same_folder(model_name_or_path, output_dir):
        for name in ("config.json", "preprocessor_config.json"):
            source = Path(model_name_or_path) / name
            if source.is_file():
                shutil.copyfile(source, output_dir / name)
    config = model.config
    report = {
        "model_name_or_path": str(model_name_or_path),
        "format": graph_format,
        "graph": path.name,
        "input": {
            "name": input_name(with_feature_extractor),
            "shape": ["batch", "samples"] if with_feature_extractor else ["batch", "frames", config.num_mel_bins],
            "sampling_rate": feature_extractor.sampling_rate,
            "frames_multiple_of": None if with_feature_extractor else config.patch_size,
        },
        "outputs": output_names(model),
        "with_feature_extractor": with_feature_extractor,
        "max_abs_difference_vs_eager": checks,
        "id2label": {str(index): label for index, label in config.id2label.items()}
        if hasattr(model, "classifier")
        else None,
    }
    (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    return report


__all__ = ["FORMATS", "TOLERANCE", "build_graph", "dynamic_shapes", "export", "load_exportable_model", "load_graph"]
