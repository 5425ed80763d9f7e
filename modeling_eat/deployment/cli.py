"""`python -m modeling_eat.export`: a saved EAT folder as one ONNX or torch.export graph."""

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from ..outputs import check_writable
from ..runtime import configure_logging, one_line_errors
from .export import FORMATS, GRAPH_FILES, export


logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Export an EAT model (classifier or encoder) with a dynamic time axis; with --with_feature_extractor the graph "
    "takes the waveform and computes the Kaldi fbank and normalisation itself."
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m modeling_eat.export", description=DESCRIPTION)
    parser.add_argument("--model_name_or_path", required=True, help="saved EAT folder (with preprocessor_config.json)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--format", default="onnx", choices=FORMATS)
    parser.add_argument("--with_feature_extractor", action="store_true", help="waveform in, Kaldi fbank inside")
    parser.add_argument("--overwrite", action="store_true", help="replace a graph already in --output_dir")
    args = parser.parse_args(argv)
    graph = Path(args.output_dir) / GRAPH_FILES[args.format]
    if graph.exists() and not args.overwrite:
        parser.error(f"{graph} exists: pass --overwrite or another --output_dir")
    return args


@one_line_errors
def export_main(argv: Sequence[str] | None = None) -> dict:
    configure_logging()
    args = parse_args(argv)
    check_writable(args.output_dir)
    report = export(args.model_name_or_path, args.output_dir, args.format, args.with_feature_extractor)
    differences = report["max_abs_difference_vs_eager"]
    checks = ", ".join(f"{length}: {difference:.1e}" for length, difference in differences.items())
    logger.info(
        f"wrote {Path(args.output_dir) / report['graph']} ({report['input']['name']} -> "
        f"{', '.join(report['outputs'])}); max |exported - eager| {checks}"
    )
    return report


__all__ = ["export_main", "parse_args"]
