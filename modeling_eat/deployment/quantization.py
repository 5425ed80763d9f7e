"""int8 versions of exported ONNX graphs, made with ONNX Runtime's quantization tools.

Only the matrix multiplications of the encoder's transformer layers with a weight operand (attention's qkv and output
projections, the MLP's two layers) get 8-bit weights; everything else stays float32: the Kaldi fbank and the
normalisation of a waveform graph (its DFT and mel matrices are MatMuls too, and log-mel energies span a range 8 bits
resolve badly), the patch embedding, the positional table, the layer norms, the attention scores and softmax, and the
classifier head. The nodes are found by the module path the exporter records on each node
(`pkg.torch.onnx.name_scopes`), so a graph exported by this package is needed.

Two methods (`QUANTIZATION_METHODS`):

- dynamic (the default): int8 weights, per output channel; each activation is quantized to uint8 at run time with a
  range taken from the tensor itself, so no calibration data is needed and no input can fall outside the range.
- static: int8 weights and uint8 activations whose ranges are fixed beforehand from calibration audio (min/max over
  the calibration clips), in ONNX's QDQ form.

Why dynamic is the default is measured in BENCHMARKS.md §10 (latency and accuracy of both).
"""

import ast
import contextlib
import dataclasses
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..configuration_eat import EATConfig
from ..feature_extraction_eat import EATFeatureExtractor
from ..hub import card_evaluation_data
from ..runtime import CommandError, int8_instruction_set
from .accuracy import ClipSource, compare_logits, graph_inputs, load_labelled_clips, load_unlabelled_clips, logits_of
from .export import REPORT_FILE, holds_classifier, load_graph


logger = logging.getLogger(__name__)

QUANTIZATION_METHODS = ("dynamic", "static")
QUANTIZED_DTYPES = ("int8",)
DEFAULT_QUANTIZATION_METHOD = "dynamic"
INT8_GRAPH_FILE = "model_int8.onnx"
# Where an int8 graph that lost too much accuracy is kept, for inspection: no loader picks this name by default.
REJECTED_INT8_GRAPH_FILE = "model_int8.rejected.onnx"
# Percentage points of accuracy (or mAP) the int8 graph may lose against the fp32 graph before it is refused.
DEFAULT_MAX_ACCURACY_DROP = 1.0
DEFAULT_CALIBRATION_SAMPLES = 100
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
# A module path inside one of the encoder's transformer layers: `model.eat.layers.3`, `model.layers.0`, ...
ENCODER_LAYER_SCOPE = re.compile(r"(^|\.)layers\.\d+$")


def import_quantization():
    try:
        import onnx
        from onnxruntime import quantization
    except ImportError as error:
        raise ImportError(
            "Quantizing needs onnx and ONNX Runtime's quantization tools: `pip install modeling-eat[onnx]`"
        ) from error
    return onnx, quantization


def _name_scopes(node) -> list[str] | None:
    for entry in node.metadata_props:
        if entry.key == NAME_SCOPES_KEY:
            return ast.literal_eval(entry.value)
    return None


def encoder_weight_matmuls(model) -> list[str]:
    """Names of the graph's MatMul nodes that multiply by a weight (an initializer) inside the encoder's transformer
    layers. Raises ValueError when the graph does not record module paths or has no such node."""
    graph = model.graph
    initializers = {initializer.name for initializer in graph.initializer}
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    if matmuls and all(_name_scopes(node) is None for node in matmuls):
        raise ValueError(
            "The graph records no module paths (`pkg.torch.onnx.name_scopes`), from which the encoder's layers are "
            "found: export it with `python -m modeling_eat.export` (torch's dynamo exporter) first."
        )
    names = [
        node.name
        for node in matmuls
        if node.input[1] in initializers
        and any(ENCODER_LAYER_SCOPE.search(scope) for scope in _name_scopes(node) or [])
    ]
    if not names:
        raise ValueError("Found no MatMul with a weight inside the encoder's transformer layers to quantize.")
    return names


@contextlib.contextmanager
def quiet_root_logger():
    """ONNX Runtime's quantizer reports each tensor it leaves in float through the root logger at INFO, and warns
    that its shape-inference pre-processing was not run (the MatMul quantization here needs no shapes)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class ArrayCalibrationReader:
    """ONNX Runtime's `CalibrationDataReader` protocol over a sequence of input arrays (one batch each)."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]):
        self.input_name = input_name
        self.batches = iter(batches)

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_graph(
    source,
    target,
    method: str = DEFAULT_QUANTIZATION_METHOD,
    calibration_batches: Iterable[np.ndarray] | None = None,
    per_channel: bool = True,
    reduce_range: bool = False,
) -> dict:
    """Writes the int8 version of the fp32 ONNX graph `source` to `target` and returns what was done: the method,
    the number of quantized MatMuls, the weight and activation types. `calibration_batches` (input arrays) are
    needed by, and only by, `method="static"`. `reduce_range` quantizes weights to 7 bits, which ONNX Runtime advises
    for CPUs without VNNI (their uint8 x int8 instruction saturates 16-bit sums)."""
    if method not in QUANTIZATION_METHODS:
        raise ValueError(f"the quantization method must be one of {QUANTIZATION_METHODS}, got {method!r}")
    if (method == "static") != (calibration_batches is not None):
        raise ValueError("static quantization needs calibration audio, dynamic quantization uses none")
    onnx, quantization = import_quantization()
    model = onnx.load(str(source), load_external_data=False)
    nodes = encoder_weight_matmuls(model)
    input_name = model.graph.input[0].name
    del model
    common = {
        "op_types_to_quantize": ["MatMul"],
        "nodes_to_quantize": nodes,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "weight_type": quantization.QuantType.QInt8,
        "extra_options": {"MatMulConstBOnly": True},
    }
    if method == "dynamic":
        with quiet_root_logger():
            quantization.quantize_dynamic(str(source), str(target), **common)
        activations = "uint8, range from each tensor at run time"
    else:
        # The calibrator keeps only each batch's min and max of every quantized MatMul's input (a few numbers), so
        # all batches are reduced at once. Not `CalibMaxIntermediateOutputs`: ONNX Runtime 1.32 drops the batches it
        # holds when that many are reached, instead of reducing them, so the ranges came from the last few clips only.
        with quiet_root_logger():
            quantization.quantize_static(
                str(source),
                str(target),
                ArrayCalibrationReader(input_name, calibration_batches),
                quant_format=quantization.QuantFormat.QDQ,
                activation_type=quantization.QuantType.QUInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                **common,
            )
        activations = "uint8, range fixed from the calibration clips (min/max)"
    return {
        "dtype": "int8",
        "method": method,
        "quantized_matmuls": len(nodes),
        "weights": f"int{7 if reduce_range else 8}, symmetric, per {'output channel' if per_channel else 'tensor'}",
        "activations": activations,
        "float32": "fbank and normalisation (waveform graphs), patch embedding, positional table, layer norms, "
        "attention scores and softmax, classifier head",
    }


class AccuracyDropError(RuntimeError):
    """The int8 graph lost more accuracy than allowed; `report` is export.json as written, with the figures."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class QuantizationRequest:
    """What `python -m modeling_eat.export --quantize int8` asks for (see `quantize_export`)."""

    method: str = DEFAULT_QUANTIZATION_METHOD
    eval_data: ClipSource | None = None
    calibration_data: ClipSource | None = None
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    per_channel: bool = True
    reduce_range: bool = False
    num_threads: int | None = None
    seed: int = 0


def own_evaluation_data(model_name_or_path: str) -> ClipSource:
    """The labelled clips a model's own card names (`hub.card_evaluation_data`), or a CommandError saying to pass
    them."""
    found = card_evaluation_data(model_name_or_path) if Path(model_name_or_path).is_dir() else None
    if found is None:
        raise CommandError(
            f"An int8 graph is checked by its accuracy on labelled clips, and the model card of {model_name_or_path} "
            "names no data set that can be loaded from here: pass --eval_dataset (an audiofolder with a test or "
            "validation split, or a Hub data set labelled with the model's classes)."
        )
    return ClipSource(found[0], split=found[1])


ENCODER_REFUSED = (
    "An int8 graph is checked by the accuracy it keeps, which needs a classifier; {what} an encoder. Quantize a "
    "fine-tuned model (EATForAudioClassification)."
)


def settle_request(model_name_or_path: str, request: QuantizationRequest) -> QuantizationRequest:
    """What can be checked before the export's minutes: the model is a classifier, and the labelled clips are named
    (by default the ones its card names). Returns the request with `eval_data` filled in."""
    if not holds_classifier(model_name_or_path):
        raise CommandError(ENCODER_REFUSED.format(what=f"{model_name_or_path} holds"))
    if request.eval_data is None:
        return dataclasses.replace(request, eval_data=own_evaluation_data(model_name_or_path))
    return request


def quantize_export(output_dir, request: QuantizationRequest | None = None) -> dict:
    """Makes the int8 version of the fp32 ONNX classifier graph in `output_dir` (written by `export`), checks it
    against the fp32 graph on labelled clips, and adds a `quantization` section to export.json: what was quantized
    and how, the calibration clips (static), both graphs' accuracy (or mAP), the logits' agreement, the file sizes
    and the CPU's int8 instructions.

    Accepted (the metric drops by at most `max_accuracy_drop` points): the graph is `model_int8.onnx` and the report
    is returned. Refused: the graph is kept as `model_int8.rejected.onnx` for inspection, export.json records the
    refusal (the fp32 graph stays the folder's graph), and `AccuracyDropError` is raised."""
    request = request or QuantizationRequest()
    output_dir = Path(output_dir)
    report_path = output_dir / REPORT_FILE
    report = json.loads(report_path.read_text())
    if report["format"] != "onnx":
        raise CommandError(
            "--quantize int8 works on ONNX graphs (ONNX Runtime's quantization tools): use --format onnx"
        )
    if report.get("id2label") is None:
        raise CommandError(ENCODER_REFUSED.format(what="the folder's graph is"))
    if request.max_accuracy_drop < 0:
        raise CommandError(f"the largest accuracy drop allowed must be >= 0 points, got {request.max_accuracy_drop}")
    config = EATConfig.from_pretrained(output_dir)
    feature_extractor = EATFeatureExtractor.from_pretrained(output_dir)
    with_feature_extractor = report["with_feature_extractor"]
    multi_label = config.problem_type == "multi_label_classification"
    eval_data = request.eval_data or own_evaluation_data(report["model_name_or_path"])
    clips = load_labelled_clips(
        eval_data, config.label2id, multi_label, feature_extractor.sampling_rate, seed=request.seed
    )

    calibration = None
    calibration_batches = None
    if request.method == "static":
        if request.calibration_data is None:
            raise CommandError(
                "Static quantization fixes each activation's range from calibration audio: pass "
                "--calibration_dataset (a folder of audio files, an audiofolder or a Hub data set; by default its "
                "train split), or use --quantization_method dynamic, which needs none."
            )
        waveforms, calibration = load_unlabelled_clips(
            request.calibration_data, feature_extractor.sampling_rate, seed=request.seed
        )
        if (calibration["dataset"], calibration["split"]) == (clips.source["dataset"], clips.source["split"]):
            logger.warning(
                "The calibration clips come from the split the accuracy is checked on: the check then flatters "
                "the int8 graph. Calibrate on another split (--calibration_split)."
            )
        calibration["method"] = "min/max of each quantized MatMul's input over the clips"
        calibration_batches = list(graph_inputs(waveforms, feature_extractor, with_feature_extractor, batch_size=1))

    fp32_path = output_dir / report["graph"]
    int8_path = output_dir / INT8_GRAPH_FILE
    rejected_path = output_dir / REJECTED_INT8_GRAPH_FILE
    for stale in (int8_path, rejected_path):
        stale.unlink(missing_ok=True)
    settings = quantize_graph(
        fp32_path, int8_path, request.method, calibration_batches, request.per_channel, request.reduce_range
    )
    inputs = list(graph_inputs(clips.waveforms, feature_extractor, with_feature_extractor))
    reference = logits_of(load_graph(fp32_path, request.num_threads), inputs)
    candidate = logits_of(load_graph(int8_path, request.num_threads), inputs)
    evaluation = compare_logits(reference, candidate, clips)
    accepted = evaluation["drop_points"] <= request.max_accuracy_drop
    if not accepted:
        int8_path.rename(rejected_path)
    graph_path = int8_path if accepted else rejected_path
    report["quantization"] = {
        **settings,
        "status": "accepted" if accepted else "rejected",
        "graph": graph_path.name,
        "max_accuracy_drop_points": request.max_accuracy_drop,
        "evaluation": evaluation,
        "calibration": calibration,
        "file_bytes": {"float32": fp32_path.stat().st_size, "int8": graph_path.stat().st_size},
        "checked_on_cpu_int8_instructions": int8_instruction_set(),
    }
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    summary = (
        f"{evaluation['metric']} {evaluation['float32']:.4f} (fp32) -> {evaluation['int8']:.4f} (int8) on "
        f"{evaluation['num_clips']} clips of {evaluation['dataset']} ({evaluation['split']}): "
        f"{evaluation['drop_points']:+.2f} points lost; top-1 agreement {evaluation['top1_agreement']:.4f}, "
        f"max |logit difference| {evaluation['max_abs_logit_difference']:.3g}"
    )
    if not accepted:
        raise AccuracyDropError(
            f"The int8 graph loses more than {request.max_accuracy_drop} points: {summary}. It is kept as "
            f"{rejected_path} for inspection; export.json records the refusal, and {fp32_path.name} (fp32) remains "
            "the folder's graph. Try --quantization_method static with calibration audio, or allow a larger drop "
            "with --max_accuracy_drop.",
            report,
        )
    logger.info(f"wrote {int8_path}: {summary}")
    return report


__all__ = [
    "DEFAULT_MAX_ACCURACY_DROP",
    "DEFAULT_QUANTIZATION_METHOD",
    "AccuracyDropError",
    "QuantizationRequest",
    "QUANTIZED_DTYPES",
    "INT8_GRAPH_FILE",
    "QUANTIZATION_METHODS",
    "REJECTED_INT8_GRAPH_FILE",
    "encoder_weight_matmuls",
    "own_evaluation_data",
    "quantize_export",
    "quantize_graph",
    "settle_request",
]
