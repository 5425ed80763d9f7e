"""`python -m modeling_eat.ssl_study`: pre-train every row of the study on unlabeled audio, evaluate each encoder
by a frozen linear probe and by fine-tuning, over several seeds, and report mean ± std with a figure."""

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from ..audio import merge_train_splits, speaker_fold
from ..synthetic_audio import write_audiofolder
from .protocol import ALL_VARIANTS, VARIANT_NAMES, StudySettings, row_jobs, write_feature_extractor, write_row_config
from .report import write_report
from .runner import run_rows


logger = logging.getLogger(__name__)


def parse_bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1", "yes")


def parse_study_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, StudySettings]:
    description = __doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m modeling_eat.ssl_study", description=description)
    parser.add_argument("--dataset_name", required=True,
                        help="labelled audiofolder (train/ and test/): its train split, labels dropped, is "
                             "pre-trained on; probes and fine-tuning train on it and are scored on its test split")
    parser.add_argument("--extra_pretraining_data", nargs="*", default=[],
                        help="more audiofolders whose train splits join the unlabeled pre-training set")
    parser.add_argument("--synthetic_clips_per_class", type=int, default=0,
                        help="clips per class of the synthetic sound set added to the pre-training set (0: none)")
    parser.add_argument("--output_dir", default="ssl-study")
    parser.add_argument("--rows", nargs="*", default=list(VARIANT_NAMES),
                        choices=[variant.name for variant in ALL_VARIANTS],
                        help="the study's rows (default: the six of the study; the ema_* rows chose the defaults)")
    parser.add_argument("--validation_speaker", default=None,
                        help="run on a fold of the train split instead: this speaker's clips are the test split, the "
                             "other speakers' the rest (to choose settings without touching the test split)")
    parser.add_argument("--skip_finetune", action="store_true", help="only pre-train and probe each row")
    parser.add_argument("--parallel", type=int, default=2, help="jobs at once (one per core)")
    parser.add_argument("--num_threads", "--threads", dest="threads", type=int, default=1,
                        help="torch threads per job")
    parser.add_argument("--report_only", action="store_true", help="rewrite the report from finished jobs")
    defaults = StudySettings()
    for field in dataclasses.fields(StudySettings):
        value = getattr(defaults, field.name)
        if isinstance(value, tuple):
            parser.add_argument(f"--{field.name}", type=int, nargs="+", default=list(value))
        elif isinstance(value, bool):
            parser.add_argument(f"--{field.name}", type=parse_bool, default=value)
        else:
            parser.add_argument(f"--{field.name}", type=type(value), default=value)
    args = parser.parse_args(argv)
    settings = StudySettings(
        **{field.name: getattr(args, field.name) for field in dataclasses.fields(StudySettings)}
    )
    return args, dataclasses.replace(settings, seeds=tuple(settings.seeds))


def prepare_pretraining_data(args, dataset: Path, output_dir: Path) -> Path:
    sources = [dataset, *map(Path, args.extra_pretraining_data)]
    if args.synthetic_clips_per_class > 0:
        synthetic = write_audiofolder(output_dir / "data" / "synthetic",
                                      num_train_per_class=args.synthetic_clips_per_class, num_test_per_class=1)
        sources.append(synthetic)
    return merge_train_splits(sources, output_dir / "data" / "pretraining")


def study_main(argv: Sequence[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args, settings = parse_study_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    settings_file = output_dir / "settings.json"
    recorded = {
        **settings.to_dict(),
        "dataset_name": str(Path(args.dataset_name).resolve()),
        "validation_speaker": args.validation_speaker,
        "extra_pretraining_data": [str(Path(path).resolve()) for path in args.extra_pretraining_data],
        "synthetic_clips_per_class": args.synthetic_clips_per_class,
    }
    if settings_file.is_file() and json.loads(settings_file.read_text()) != recorded:
        raise SystemExit(
            f"{output_dir} holds a study with other settings or data ({settings_file}): results must not mix; choose "
            "another --output_dir, or pass the same settings to resume it"
        )
    settings_file.write_text(json.dumps(recorded, indent=1) + "\n")
    timings = {}
    if not args.report_only:
        dataset = Path(args.dataset_name)
        if args.validation_speaker is not None:
            dataset = speaker_fold(dataset, output_dir / "data" / f"fold_{args.validation_speaker}",
                                   args.validation_speaker)
        pretraining_data = prepare_pretraining_data(args, dataset, output_dir)
        write_feature_extractor(settings, output_dir)
        variants = [variant for variant in ALL_VARIANTS if variant.name in args.rows]
        rows = []
        # Seed-major, so that every row has its first seed before any row has its third.
        for seed in settings.seeds:
            for variant in variants:
                write_row_config(settings, variant, seed, output_dir)
                jobs = row_jobs(settings, variant, seed, output_dir, pretraining_data, dataset)
                rows.append(jobs[:2] if args.skip_finetune else jobs)
        start = time.perf_counter()
        timings = run_rows(rows, parallel=args.parallel, threads=args.threads)
        timings["total"] = time.perf_counter() - start
        logger.info(f"study done in {timings['total']:.0f} s")
    report = write_report(output_dir, settings, timings)
    print(report.read_text())
    return report


__all__ = ["parse_study_args", "study_main"]
