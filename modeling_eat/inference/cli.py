"""The inference commands: `python -m modeling_eat.extract` (embeddings of audio files or a data set) and
`python -m modeling_eat.linear_probe` (a frozen-encoder quality check), sharing their model options."""

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from ..audio import (
    AudioDecodingError,
    load_audio_dataset,
    load_feature_extractor,
    skipped_audio_message,
)
from ..feature_extraction_eat import frames_to_seconds
from ..outputs import check_replaceable, check_writable
from ..runtime import CommandError, add_num_threads_argument, configure_logging, configure_threads, one_line_errors
from .features import (
    frame_hop_seconds,
    iter_features,
    load_encoder,
    resolve_device,
    resolve_layer,
    window_num_frames,
)
from .probe import POOLINGS, check_probe_labels, linear_probe, pooled_features
from .sources import decoded_clips, find_audio_files
from .storage import FORMATS, is_features_output, partial_output_path, save_features


logger = logging.getLogger(__name__)

EXTRACT_DESCRIPTION = "Utterance and frame-level embeddings from an EAT encoder, for audio files or a data set."
PROBE_DESCRIPTION = "Logistic regression on frozen EAT embeddings: a quick quality measure of a checkpoint."


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by both commands: model, extractor, batching, device, layer, windows."""
    parser.add_argument("--model_name_or_path", required=True, help="saved EAT folder or Hub id")
    parser.add_argument("--feature_extractor_name", default=None, help="preset (audioset/esc50/spc2) or folder")
    parser.add_argument("--per_device_eval_batch_size", "--batch_size", type=int, default=8,
                        help="windows per forward pass")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--layer", type=int, default=-1, help="hidden state: 0 = embeddings, i = block i, -1 = last")
    parser.add_argument(
        "--window_seconds", type=float, default=None, help="window for long clips (default 10 s or the model's limit)"
    )
    parser.add_argument("--always_window", action="store_true", help="window every clip longer than the window")
    parser.add_argument("--num_workers", type=int, default=0, help="audio decoding processes (one thread each)")
    add_num_threads_argument(parser)


def check_model_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What `add_model_arguments` takes that only fails once the model is loaded or the clips are batched."""
    if args.per_device_eval_batch_size < 1:
        parser.error(f"--per_device_eval_batch_size must be >= 1, got {args.per_device_eval_batch_size}")
    if args.num_workers < 0:
        parser.error(f"--num_workers must be >= 0, got {args.num_workers}")
    try:
        device = resolve_device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device} is not a device torch knows: pass auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch sees no CUDA device: pass --device cpu (or auto)")


def check_model_options(args, model) -> None:
    """`--layer` and `--window_seconds` against the loaded model, in one line (the rules' messages name the fix)."""
    try:
        resolve_layer(args.layer, model.config.num_hidden_layers)
        window_num_frames(model.config, args.window_seconds)
    except ValueError as error:
        raise CommandError(str(error)) from None


def feature_metadata(args, model) -> dict:
    return {
        "model_name_or_path": str(args.model_name_or_path),
        "layer": resolve_layer(args.layer, model.config.num_hidden_layers),
        "hidden_size": model.config.hidden_size,
        "frame_hop_seconds": frame_hop_seconds(model.config.patch_size),
        "frame_times": "start",
        "window_seconds": frames_to_seconds(window_num_frames(model.config, args.window_seconds)),
        "always_window": args.always_window,
    }


def parse_extract_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m modeling_eat.extract", description=EXTRACT_DESCRIPTION)
    parser.add_argument("inputs", nargs="*", help="audio files and folders (searched for .wav/.flac/.mp3/.ogg)")
    add_model_arguments(parser)
    parser.add_argument("--dataset_name", default=None, help="local audiofolder or Hub data set instead of inputs")
    parser.add_argument("--dataset_config_name", default=None, help="configuration of the Hub data set")
    parser.add_argument("--split_name", "--split", default="train", help="split of --dataset_name to extract")
    parser.add_argument("--audio_column_name", default="audio", help="column holding the audio")
    parser.add_argument("--max_samples", type=int, default=None, help="only the first N clips")
    parser.add_argument("--output", required=True, help=".safetensors file, or a folder for npy/datasets")
    parser.add_argument("--format", default="safetensors", choices=FORMATS)
    parser.add_argument("--overwrite", action="store_true", help="replace features an earlier run wrote to --output")
    parser.add_argument(
        "--on_undecodable", default="skip", choices=["skip", "fail"],
        help="skip (and list at the end) files that cannot be decoded, or stop at the first; either way the clips "
             "finished before a stop are saved beside --output",
    )
    # Accepted so that existing commands keep working; skipping is the default.
    parser.add_argument("--skip_undecodable", dest="on_undecodable", action="store_const", const="skip",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_model_arguments(parser, args)
    if bool(args.inputs) == bool(args.dataset_name):
        parser.error("pass audio files/folders or --dataset_name (exactly one of the two)")
    return args


def check_extract_output(output, overwrite: bool) -> None:
    """Before any work: `--output` is new, or (with `--overwrite`) features an earlier extraction wrote, never
    anything else (an input WAV, a text file, a folder of data); and its folder is writable."""
    output = Path(output)
    if output.exists() or output.is_symlink():
        if not overwrite:
            raise CommandError(f"--output {output} exists: pass --overwrite to replace it, or another --output.")
        check_replaceable(
            output, is_features_output,
            f"--output {output} is not features written by modeling_eat.extract, and --overwrite only replaces "
            "those: choose another --output.",
        )
    check_writable(output, "--output", is_file=True)


@one_line_errors
def extract_main(argv: Sequence[str] | None = None) -> Path:
    from tqdm.auto import tqdm

    configure_logging()
    args = parse_extract_args(argv)
    check_extract_output(args.output, args.overwrite)
    configure_threads(args.num_threads)  # logs its choice
    if not args.dataset_name:
        # A mistyped input path, named before the model loads.
        try:
            sources = [str(path) for path in find_audio_files(args.inputs)][: args.max_samples]
        except (FileNotFoundError, ValueError) as error:
            raise CommandError(f"{error}: check the path, and pass audio files or folders holding them.") from None
    # Nothing is written before the model has loaded and every clip is encoded: the new output then replaces the
    # old one in one rename.
    model = load_encoder(args.model_name_or_path, args.device, args.dtype)
    check_model_options(args, model)
    feature_extractor = load_feature_extractor(args.feature_extractor_name, args.model_name_or_path)
    if args.dataset_name:
        dataset = load_audio_dataset(
            args.dataset_name, args.dataset_config_name, args.split_name, args.audio_column_name,
            max_samples=args.max_samples,
        )
        sources = dataset[args.audio_column_name]
    skipped = [] if args.on_undecodable == "skip" else None
    clips = ClipsUntilFailure(decoded_clips(sources, feature_extractor.sampling_rate, args.num_workers, skipped))
    metadata = feature_metadata(args, model)
    features = []
    try:
        for clip in tqdm(
            iter_features(
                model, feature_extractor, clips, args.per_device_eval_batch_size, args.layer, args.window_seconds,
                args.always_window,
            ),
            total=len(sources),
            desc="extracting",
            unit="clip",
        ):
            features.append(clip)
        if clips.failure is not None:
            raise clips.failure
    except BaseException as error:
        save_finished_clips(features, args, {**metadata, "complete": False, "stopped_by": repr(error)})
        if isinstance(error, AudioDecodingError):
            raise CommandError(
                f"stopped at a file that cannot be decoded (--on_undecodable fail): {str(error).splitlines()[0]} "
                "Or pass --on_undecodable skip to leave such files out and list them."
            ) from None
        raise
    if not features:
        raise CommandError(
            f"nothing was written: none of the {len(sources)} inputs could be decoded (the warnings above say why): "
            "pass audio files (a clip of at least 25 ms that FFmpeg or soundfile reads)."
        )
    if skipped:
        metadata["skipped_undecodable"] = skipped
        logger.warning(skipped_audio_message(skipped, len(sources)))
    output = save_features(features, args.output, args.format, metadata)
    logger.info(
        f"wrote {len(features)} clips ({args.format}, hidden size {model.config.hidden_size}, frame rows every "
        f"{frame_hop_seconds(model.config.patch_size):.2f} s) to {output} on {model.device}"
    )
    return output


class ClipsUntilFailure:
    """The clips up to the first one that fails to load, then a clean end, so that the clips read before it are still
    encoded (a failure raised through `iter_features` would drop the ones waiting for a full batch); the failure is
    kept in `failure` for the caller to raise."""

    def __init__(self, clips):
        self.clips = clips
        self.failure = None

    def __iter__(self):
        try:
            yield from self.clips
        except Exception as error:
            self.failure = error


def save_finished_clips(features: list, args, metadata: dict) -> None:
    """What a stopped extraction had finished, saved beside the requested output so that a long run keeps it."""
    if not features:
        return
    partial = partial_output_path(args.output)
    try:
        save_features(features, partial, args.format, metadata)
    except Exception as error:  # the original failure is the one to report
        logger.error(f"could not save the {len(features)} finished clips to {partial}: {error}")
        return
    logger.error(f"stopped after {len(features)} clips; they are saved in {partial} (metadata complete=false)")


def parse_probe_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m modeling_eat.linear_probe", description=PROBE_DESCRIPTION)
    add_model_arguments(parser)
    parser.add_argument("--dataset_name", required=True, help="local audiofolder or Hub data set")
    parser.add_argument("--dataset_config_name", default=None, help="configuration of the Hub data set")
    parser.add_argument("--train_split_name", "--train_split", default="train", help="split the probe is fitted on")
    parser.add_argument("--eval_split_name", "--test_split", default="test", help="split the probe is scored on")
    parser.add_argument("--audio_column_name", default="audio", help="column holding the audio")
    parser.add_argument("--label_column_name", default="label", help="column holding the labels")
    parser.add_argument("--max_train_samples", type=int, default=None, help="only the first N training clips")
    parser.add_argument("--max_eval_samples", "--max_test_samples", type=int, default=None,
                        help="only the first N evaluation clips")
    parser.add_argument("--pooling", default="cls", choices=POOLINGS)
    parser.add_argument("--regularization", type=float, default=1.0, help="inverse L2 strength C")
    parser.add_argument("--confusion_matrix", default=None, help="write the test confusion matrix to this PNG")
    parser.add_argument("--output_json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    check_model_arguments(parser, args)
    if not (math.isfinite(args.regularization) and args.regularization > 0):
        parser.error(f"--regularization must be a number > 0 (the inverse L2 strength), got {args.regularization}")
    return args


def is_probe_results(path) -> bool:
    """Whether `path` is a JSON file an earlier probe wrote (a rerun may replace it; any other file is the user's)."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(results, dict) and {"accuracy", "chance", "num_classes", "pooling"} <= results.keys()


@one_line_errors
def probe_main(argv: Sequence[str] | None = None) -> dict:
    from tqdm.auto import tqdm

    configure_logging()
    args = parse_probe_args(argv)
    for path, option in ((args.output_json, "--output_json"), (args.confusion_matrix, "--confusion_matrix")):
        if path is not None:
            check_writable(path, option, is_file=True)
    if args.output_json is not None:
        check_replaceable(
            args.output_json, is_probe_results,
            f"--output_json {args.output_json} exists and holds no linear probe's results, which are all this command "
            "replaces: choose another file.",
        )
    if args.confusion_matrix is not None:
        from ..plotting import check_replaceable_figure

        check_replaceable_figure(args.confusion_matrix, "--confusion_matrix")
    configure_threads(args.num_threads)  # logs its choice
    model = load_encoder(args.model_name_or_path, args.device, args.dtype)
    check_model_options(args, model)
    feature_extractor = load_feature_extractor(args.feature_extractor_name, args.model_name_or_path)

    # Both splits and the labels are read (and checked) before any clip is encoded.
    splits = {}
    for split, max_samples, split_option in (
        (args.train_split_name, args.max_train_samples, "--train_split_name"),
        (args.eval_split_name, args.max_eval_samples, "--eval_split_name"),
    ):
        splits[split_option] = load_audio_dataset(
            args.dataset_name, args.dataset_config_name, split, args.audio_column_name, args.label_column_name,
            max_samples=max_samples, split_option=split_option,
        )
    try:
        check_probe_labels(splits["--train_split_name"][args.label_column_name])
    except ValueError as error:
        raise CommandError(f"{args.dataset_name} ({args.train_split_name} split): {error}.") from None

    def split_features(split: str, split_option: str):
        dataset = splits[split_option]
        clips = decoded_clips(dataset[args.audio_column_name], feature_extractor.sampling_rate, args.num_workers)
        features = iter_features(
            model, feature_extractor, clips, args.per_device_eval_batch_size, args.layer, args.window_seconds,
            args.always_window,
        )
        features = list(tqdm(features, total=len(dataset), desc=f"{split} features", unit="clip"))
        return pooled_features(features, args.pooling), list(dataset[args.label_column_name])

    train_features, train_labels = split_features(args.train_split_name, "--train_split_name")
    test_features, test_labels = split_features(args.eval_split_name, "--eval_split_name")
    results = linear_probe(train_features, train_labels, test_features, test_labels, args.regularization)
    predictions = results.pop("predictions")
    results.update(model_name_or_path=args.model_name_or_path, pooling=args.pooling, layer=args.layer)
    print(
        f"linear probe ({args.pooling}, layer {args.layer}) on {args.dataset_name}: "
        f"accuracy {results['accuracy']:.4f} vs chance {results['chance']:.4f} ({results['num_classes']} classes, "
        f"{results['num_train']} train / {results['num_test']} test clips)"
    )
    if args.confusion_matrix:
        from ..plotting import plot_confusion_matrix

        labels = sorted(set(train_labels) | set(test_labels))
        plot_confusion_matrix(
            test_labels, predictions, labels, args.confusion_matrix, title=f"linear probe, {args.dataset_name}"
        )
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


__all__ = ["add_model_arguments", "extract_main", "feature_metadata", "probe_main"]
