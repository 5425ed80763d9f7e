"""`python -m modeling_eat.ssl_study`: pre-train every row of the study on unlabeled audio (at one or several sizes
and lengths), evaluate each encoder by a frozen linear probe and by fine-tuning on one or several labelled data sets,
over several seeds, and report mean ± std with a figure."""

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from ..audio import labelled_subset, merge_train_splits, speaker_fold
from ..configuration_eat import SIZE_PRESETS
from ..runtime import one_line_errors
from ..synthetic_audio import write_audiofolder
from .protocol import (
    ALL_VARIANTS,
    VARIANT_NAMES,
    Evaluation,
    StudySettings,
    run_jobs,
    study_runs,
    write_feature_extractor,
    write_run_config,
)
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
    parser.add_argument("--dataset_name", nargs="+", required=True,
                        help="labelled audiofolders (train/ and test/), each with its own folder name: the union of "
                             "their train splits, labels dropped, is pre-trained on; every encoder is probed and "
                             "fine-tuned on each of them (trained on its train split, scored on its test split)")
    parser.add_argument("--extra_pretraining_data", nargs="*", default=[],
                        help="more audiofolders whose train splits join the unlabeled pre-training set")
    parser.add_argument("--synthetic_clips_per_class", type=int, default=0,
                        help="clips per class of the synthetic sound set added to the pre-training set (0: none)")
    parser.add_argument("--output_dir", default="ssl-study")
    parser.add_argument("--rows", nargs="*", default=list(VARIANT_NAMES),
                        choices=[variant.name for variant in ALL_VARIANTS],
                        help="the study's rows (default: the six of the study; the others chose the short-run "
                             "defaults or test a change to them)")
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
            parser.add_argument(f"--{field.name}", type=type(value[0]), nargs="+", default=list(value))
        elif isinstance(value, bool):
            parser.add_argument(f"--{field.name}", type=parse_bool, default=value)
        else:
            parser.add_argument(f"--{field.name}", type=type(value), default=value)
    args = parser.parse_args(argv)
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(StudySettings)}
    settings = StudySettings(**{name: tuple(value) if isinstance(value, list) else value
                                for name, value in values.items()})
    unknown = [preset for preset in settings.presets if preset not in SIZE_PRESETS]
    if unknown:
        parser.error(f"--presets {unknown}: choose among {sorted(SIZE_PRESETS)}")
    if min(settings.pretrain_steps) < 1:
        parser.error("--pretrain_steps must be >= 1 (the random_init row is the zero-step encoder)")
    if args.validation_speaker is not None and len(args.dataset_name) > 1:
        parser.error("--validation_speaker makes a fold of one data set: pass a single --dataset_name with it")
    names = [Path(path).name for path in args.dataset_name]
    if len(set(names)) != len(names):
        parser.error(f"the data sets' folder names key their results and must differ, got {names}")
    return args, settings


def prepare_pretraining_data(args, datasets: Sequence[Path], output_dir: Path) -> Path:
    sources = [*datasets, *map(Path, args.extra_pretraining_data)]
    if args.synthetic_clips_per_class > 0:
        synthetic = write_audiofolder(output_dir / "data" / "synthetic",
                                      num_train_per_class=args.synthetic_clips_per_class, num_test_per_class=1)
        sources.append(synthetic)
    return merge_train_splits(sources, output_dir / "data" / "pretraining")


def prepare_evaluations(settings: StudySettings, datasets: Sequence[Path], output_dir: Path) -> list[Evaluation]:
    """Each data set's probe data (itself) and fine-tuning data per seed: itself, or a few-label subset of its train
    split drawn with the seed."""
    evaluations = []
    for dataset in datasets:
        finetune_data = {seed: dataset for seed in settings.seeds}
        if settings.finetune_labels_per_class > 0:
            finetune_data = {
                seed: labelled_subset(
                    dataset, output_dir / "data" / f"{dataset.name}_{settings.finetune_labels_per_class}_per_class"
                    / f"seed_{seed}", settings.finetune_labels_per_class, seed=seed)
                for seed in settings.seeds
            }
        evaluations.append(Evaluation(dataset.name, dataset, finetune_data))
    return evaluations


def check_study_folder(output_dir: Path, recorded: dict) -> dict:
    """The settings file of the study folder: a study that is resumed or extended (more seeds, presets, lengths or
    rows) must share every other setting and its data, or its results would mix."""
    settings_file = output_dir / "settings.json"
    if settings_file.is_file():
        previous = json.loads(settings_file.read_text())
        span = (*StudySettings.SPAN, "rows")
        def fixed(settings):
            return {name: value for name, value in settings.items() if name not in span}

        if fixed(previous) != fixed(recorded):
            raise SystemExit(
                f"{output_dir} holds a study with other settings or data ({settings_file}): results must not mix; "
                "choose another --output_dir, or pass the same settings to resume it (more --seeds, --presets, "
                "--pretrain_steps or --rows may be added)"
            )
        for name in span:
            recorded[name] = [*previous.get(name, []), *(v for v in recorded[name] if v not in previous.get(name, []))]
    settings_file.write_text(json.dumps(recorded, indent=1) + "\n")
    return recorded


@one_line_errors
def study_main(argv: Sequence[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args, settings = parse_study_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    recorded = check_study_folder(output_dir, {
        **settings.to_dict(),
        "rows": list(args.rows),
        "dataset_name": [str(Path(path).resolve()) for path in args.dataset_name],
        "validation_speaker": args.validation_speaker,
        "extra_pretraining_data": [str(Path(path).resolve()) for path in args.extra_pretraining_data],
        "synthetic_clips_per_class": args.synthetic_clips_per_class,
    })
    timings = {}
    if not args.report_only:
        datasets = [Path(path) for path in args.dataset_name]
        if args.validation_speaker is not None:
            datasets = [speaker_fold(datasets[0], output_dir / "data" / f"fold_{args.validation_speaker}",
                                     args.validation_speaker)]
        pretraining_data = prepare_pretraining_data(args, datasets, output_dir)
        evaluations = prepare_evaluations(settings, datasets, output_dir)
        write_feature_extractor(settings, output_dir)
        rows = []
        for run in study_runs(settings, args.rows):
            write_run_config(run, output_dir)
            jobs = run_jobs(settings, run, output_dir, pretraining_data, evaluations)
            rows.append([job for job in jobs if not (args.skip_finetune and job.kind == "finetune")])
        start = time.perf_counter()
        timings = run_rows(rows, parallel=args.parallel, threads=args.threads)
        timings["total"] = time.perf_counter() - start
        logger.info(f"study done in {timings['total']:.0f} s")
    report = write_report(output_dir, StudySettings(**{
        name: tuple(recorded[name]) if name in StudySettings.SPAN else getattr(settings, name)
        for name in (field.name for field in dataclasses.fields(StudySettings))
    }), timings)
    print(report.read_text())
    return report


__all__ = ["parse_study_args", "study_main"]
