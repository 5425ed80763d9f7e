"""`python -m modeling_eat.export`: a saved EAT folder as one ONNX or torch.export graph, and on request its int8
version, checked by the accuracy it keeps."""

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..outputs import check_writable
from ..runtime import configure_logging, one_line_errors
from .accuracy import ClipSource
from .export import FORMATS, GRAPH_FILES, export
from .quantization import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_QUANTIZATION_METHOD,
    INT8_GRAPH_FILE,
    QUANTIZATION_METHODS,
    QUANTIZED_DTYPES,
    REJECTED_INT8_GRAPH_FILE,
    AccuracyDropError,
    QuantizationRequest,
    quantize_export,
    settle_request,
)


logger = logging.getLogger(__name__)

INT8_GRAPHS = (INT8_GRAPH_FILE, REJECTED_INT8_GRAPH_FILE)

DESCRIPTION = (
    "Export an EAT model (classifier or encoder) with a dynamic time axis; with --with_feature_extractor the graph "
    "takes the waveform and computes the Kaldi fbank and normalisation itself. --quantize int8 also writes "
    f"{INT8_GRAPH_FILE} (the encoder's matrix multiplications in 8 bits) and checks its accuracy against the fp32 "
    f"graph on labelled clips: a graph that loses more than --max_accuracy_drop points is refused (kept as "
    f"{REJECTED_INT8_GRAPH_FILE}, exit status 1)."
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m modeling_eat.export", description=DESCRIPTION)
    parser.add_argument("--model_name_or_path", required=True, help="saved EAT folder (with preprocessor_config.json)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--format", default="onnx", choices=FORMATS)
    parser.add_argument("--with_feature_extractor", action="store_true", help="waveform in, Kaldi fbank inside")
    parser.add_argument("--overwrite", action="store_true", help="replace a graph already in --output_dir")
    quantize = parser.add_argument_group("int8 graphs (ONNX)")
    quantize.add_argument("--quantize", choices=QUANTIZED_DTYPES, default=None,
                          help="also write the quantized graph, checked by its accuracy")
    quantize.add_argument("--quantization_method", default=DEFAULT_QUANTIZATION_METHOD, choices=QUANTIZATION_METHODS,
                          help="dynamic: activation ranges at run time, no calibration; static: ranges fixed from "
                               "--calibration_dataset")
    quantize.add_argument("--eval_dataset", default=None,
                          help="labelled clips the check scores both graphs on: an audiofolder or a Hub data set "
                               "(default: the one the model card names)")
    quantize.add_argument("--eval_dataset_config", default=None, help="configuration of the Hub data set")
    quantize.add_argument("--eval_split", default=None, help="split to score on (default: test, else validation)")
    quantize.add_argument("--max_eval_samples", type=int, default=None, help="score on a random subset this big")
    quantize.add_argument("--audio_column_name", default="audio")
    quantize.add_argument("--label_column_name", default="label", help="labels named as the model's id2label")
    quantize.add_argument("--max_accuracy_drop", type=float, default=DEFAULT_MAX_ACCURACY_DROP,
                          help="percentage points of accuracy (or mAP) the int8 graph may lose (default 1)")
    quantize.add_argument("--calibration_dataset", default=None,
                          help="static only: a folder of audio files, an audiofolder or a Hub data set")
    quantize.add_argument("--calibration_split", default="train")
    quantize.add_argument("--calibration_samples", type=int, default=DEFAULT_CALIBRATION_SAMPLES,
                          help="calibration clips (a random subset)")
    quantize.add_argument("--per_tensor", action="store_true",
                          help="one weight scale per matrix instead of one per output channel")
    quantize.add_argument("--reduce_range", action="store_true",
                          help="7-bit weights, for CPUs without VNNI whose int8 products can saturate")
    quantize.add_argument("--num_threads", type=int, default=None,
                          help="ONNX Runtime's threads for the check (default: the CPUs free now)")
    args = parser.parse_args(argv)
    existing = [name for name in (GRAPH_FILES[args.format], *INT8_GRAPHS) if (Path(args.output_dir) / name).exists()]
    if existing and not args.overwrite:
        parser.error(f"{', '.join(existing)} exist(s) in {args.output_dir}: pass --overwrite or another --output_dir")
    if args.quantize and args.format != "onnx":
        parser.error("--quantize int8 makes ONNX graphs (ONNX Runtime's quantization tools): use --format onnx")
    if args.quantize and args.quantization_method == "static" and args.calibration_dataset is None:
        parser.error("--quantization_method static fixes activation ranges from calibration audio: pass "
                     "--calibration_dataset (a folder of audio files, an audiofolder or a Hub data set)")
    if args.calibration_dataset is not None and args.quantization_method != "static":
        parser.error("--calibration_dataset is for --quantization_method static; dynamic quantization needs none")
    return args


def quantization_request(args: argparse.Namespace) -> QuantizationRequest:
    eval_data = None
    if args.eval_dataset is not None:
        eval_data = ClipSource(args.eval_dataset, args.eval_dataset_config, args.eval_split, args.audio_column_name,
                               args.label_column_name, args.max_eval_samples)
    calibration_data = None
    if args.calibration_dataset is not None:
        calibration_data = ClipSource(args.calibration_dataset, split=args.calibration_split,
                                      audio_column=args.audio_column_name, max_samples=args.calibration_samples)
    return QuantizationRequest(
        method=args.quantization_method,
        eval_data=eval_data,
        calibration_data=calibration_data,
        max_accuracy_drop=args.max_accuracy_drop,
        per_channel=not args.per_tensor,
        reduce_range=args.reduce_range,
        num_threads=args.num_threads,
    )


@one_line_errors
def export_main(argv: Sequence[str] | None = None) -> dict:
    configure_logging()
    args = parse_args(argv)
    check_writable(args.output_dir)
    # Where the int8 check's labelled clips come from is settled before the export's minutes, not after.
    request = settle_request(args.model_name_or_path, quantization_request(args)) if args.quantize else None
    report = export(args.model_name_or_path, args.output_dir, args.format, args.with_feature_extractor)
    differences = report["max_abs_difference_vs_eager"]
    checks = ", ".join(f"{length}: {difference:.1e}" for length, difference in differences.items())
    logger.info(
        f"wrote {Path(args.output_dir) / report['graph']} ({report['input']['name']} -> "
        f"{', '.join(report['outputs'])}); max |exported - eager| {checks}"
    )
    if not args.quantize:
        for name in INT8_GRAPHS:
            stale = Path(args.output_dir) / name
            if stale.exists():
                stale.unlink()
                logger.info(f"removed {stale}: it was made from the graph this export replaced")
        return report
    try:
        report = quantize_export(args.output_dir, request)
    except AccuracyDropError as error:
        logger.error(str(error))
        sys.exit(1)
    return report


__all__ = ["export_main", "parse_args", "quantization_request"]
