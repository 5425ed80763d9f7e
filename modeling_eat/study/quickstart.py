"""EAT end to end in one command, offline and on a CPU: data → pre-training → fine-tuning → evaluation → pipeline.

    python -m modeling_eat.quickstart                      # a synthesised 7-class sound set, minutes on 2 cores
    python -m modeling_eat.quickstart --dataset_name DIR   # your own audiofolder (train/ and test/) or a Hub data set

It runs the package's own commands (`python -m modeling_eat.pretrain`, `.finetune`) as a user would, each in its own
process, then labels a test clip with `pipeline("audio-classification")`. Each process chooses its torch threads from
the CPUs free when it starts (`--num_threads N` fixes them for all).
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from ..audio import check_dataset_name, labelled_subset
from ..hub import check_config_source
from ..outputs import check_writable
from ..runtime import CommandError, add_num_threads_argument, configure_logging, configure_threads, one_line_errors
from ..synthetic_audio import write_audiofolder


def parse_quickstart_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m modeling_eat.quickstart", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output_dir", default="eat-quickstart",
                        help="Where data, models and results go (what an earlier quickstart left there is replaced).")
    parser.add_argument(
        "--dataset_name",
        default=None,
        help="An audiofolder directory with train/ and test/ (or a Hub id); default: a built-in synthesised set.",
    )
    parser.add_argument("--label_column_name", default="label")
    parser.add_argument("--config_name", default="small", help="Size preset (tiny, small, base, large) or a JSON.")
    # --clip_seconds and --batch_size: this script's first names of the options the other scripts call so.
    parser.add_argument("--max_length_seconds", "--clip_seconds", type=float, default=1.0,
                        help="Crop length for training.")
    parser.add_argument("--num_train_per_class", type=int, default=100,
                        help="Synthesised training clips per class: all of them, unlabeled, are pre-trained on.")
    parser.add_argument("--num_labeled_per_class", type=int, default=5,
                        help="Of those, the clips per class whose labels fine-tuning sees (the few-label regime "
                             "pre-training is for); 0: all of them.")
    parser.add_argument("--num_test_per_class", type=int, default=20, help="Synthesised test clips per class.")
    parser.add_argument("--pretrain_steps", type=int, default=1000, help="Pre-training updates.")
    parser.add_argument("--finetune_steps", type=int, default=200, help="Fine-tuning updates, of each arm.")
    parser.add_argument("--per_device_train_batch_size", "--batch_size", type=int, default=16,
                        help="Fine-tuning batch; pre-training takes half (each of its clips has 16 masked clones).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data, the weights and the training order.")
    add_num_threads_argument(parser)
    return parser.parse_args(argv)


def run_step(title: str, command: list[str]) -> float:
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    status = subprocess.run(command).returncode
    if status != 0:
        # The step has said what went wrong, in its own last line above.
        raise CommandError(
            f"the step '{title}' failed (exit status {status}; its message is above): fix what it names, then rerun "
            "the quickstart."
        )
    return time.perf_counter() - start


def finetune_command(args, dataset, output_dir: Path, init: list[str], threads: list[str]) -> list[str]:
    """The same fine-tuning for both arms; only `init` (a pre-trained folder, or a size preset) differs. The layer
    decay is set explicitly: fine-tuning would otherwise decay a pre-trained encoder's lower blocks only."""
    return [
        sys.executable, "-m", "modeling_eat.finetune",
        *init,
        "--dataset_name", str(dataset),
        "--label_column_name", args.label_column_name,
        "--max_length_seconds", str(args.max_length_seconds),
        "--per_device_train_batch_size", str(args.per_device_train_batch_size),
        "--per_device_eval_batch_size", str(args.per_device_train_batch_size * 2),
        "--max_steps", str(args.finetune_steps),
        # The training loss a few times during the run.
        "--logging_steps", str(max(1, args.finetune_steps // 4)),
        "--learning_rate", "1e-3",
        "--layer_decay", "1.0",
        "--seed", str(args.seed),
        "--output_dir", str(output_dir),
        "--overwrite_output_dir",
        "--do_train", "--do_eval",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--report_to", "none",
        *threads,
    ]


def first_test_clip(dataset, label_column_name: str) -> tuple[Path, str] | None:
    """The first clip of a local audiofolder's test split and its label, for the pipeline's demonstration."""
    metadata = Path(str(dataset)) / "test" / "metadata.csv"
    if not metadata.is_file():
        return None
    with metadata.open(newline="") as handle:
        row = next(csv.DictReader(handle), None)
    if row is None or label_column_name not in row:
        return None
    return metadata.parent / row["file_name"], row[label_column_name]


@one_line_errors
def quickstart_main(argv=None):
    configure_logging()
    args = parse_quickstart_args(argv)
    # What the steps would refuse minutes in, refused now.
    if args.dataset_name is not None:
        check_dataset_name(args.dataset_name)
    check_config_source(args.config_name)
    check_writable(args.output_dir)
    output_dir = Path(args.output_dir)
    started = time.perf_counter()
    configure_threads(args.num_threads)  # logs its choice
    threads = [] if args.num_threads is None else ["--num_threads", str(args.num_threads)]

    if args.dataset_name is None:
        dataset = write_audiofolder(
            output_dir / "data",
            num_train_per_class=args.num_train_per_class,
            num_test_per_class=args.num_test_per_class,
            seed=args.seed,
        )
        print(f"Synthesised labelled audio set in {dataset}")
    else:
        dataset = args.dataset_name
    labeled = dataset
    if args.num_labeled_per_class > 0 and Path(str(dataset)).is_dir():
        labeled = labelled_subset(dataset, output_dir / "labeled", args.num_labeled_per_class, args.label_column_name)
        print(f"Fine-tuning sees the labels of {args.num_labeled_per_class} training clips per class ({labeled})")
    pretrained_dir = output_dir / "pretrained"
    finetuned_dir, scratch_dir = output_dir / "finetuned", output_dir / "from_scratch"

    timings = {
        "pre-training": run_step(
            "Pre-training (EAT objective, every training clip, labels unused)",
            [
                sys.executable, "-m", "modeling_eat.pretrain",
                "--dataset_name", str(dataset),
                "--config_name", args.config_name,
                "--max_length_seconds", str(args.max_length_seconds),
                "--per_device_train_batch_size", str(args.per_device_train_batch_size // 2),
                "--max_train_steps", str(args.pretrain_steps),
                "--learning_rate", "1e-3",
                "--seed", str(args.seed),
                "--output_dir", str(pretrained_dir),
                "--overwrite_output_dir",
                *threads,
            ],
        ),
        "fine-tuning": run_step(
            "Fine-tuning the pre-trained encoder, and evaluation",
            finetune_command(args, labeled, finetuned_dir, ["--model_name_or_path", str(pretrained_dir)], threads),
        ),
        "from scratch": run_step(
            "The same fine-tuning from a random initialisation, for comparison",
            finetune_command(args, labeled, scratch_dir, ["--config_name", args.config_name], threads),
        ),
    }

    accuracy = {name: json.loads((folder / "eval_results.json").read_text())["eval_accuracy"]
                for name, folder in (("pre-trained", finetuned_dir), ("from scratch", scratch_dir))}
    num_labels = len(json.loads((finetuned_dir / "config.json").read_text())["id2label"])
    print("\n=== Results")
    print(f"accuracy on the test split: pre-trained {accuracy['pre-trained']:.3f} | from scratch "
          f"{accuracy['from scratch']:.3f} (chance with {num_labels} classes: {1 / num_labels:.3f})")

    from transformers import pipeline

    import modeling_eat  # noqa: F401  (registers EAT with the Auto classes, which the pipeline loads through)

    example = first_test_clip(dataset, args.label_column_name)
    if example is not None:
        path, label = example
        classifier = pipeline("audio-classification", model=str(finetuned_dir))
        scores = ", ".join(f"{guess['label']} {guess['score']:.2f}" for guess in classifier(str(path), top_k=3))
        print(f"pipeline on {path.name} (true label: {label}): {scores}")
    timings["total"] = time.perf_counter() - started
    print("time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))

