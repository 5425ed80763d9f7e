"""Pre-train EAT (or MaskSpec) with Accelerate: `python -m modeling_eat.pretrain ...` or
`accelerate launch -m modeling_eat.pretrain ...`.

Arguments follow transformers' `*_no_trainer.py` examples. Runs are resumable (`--checkpointing_steps N` then
`--resume_from_checkpoint latest`); the final folder loads with `EATForPreTraining.from_pretrained` and
`EATModel.from_pretrained`. Example (CPU, two processes):

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --mixed_precision no --num_machines 1 \
        --dynamo_backend no -m modeling_eat.pretrain --dataset_name ../shared/data/fsdd --config_name tiny \
        --max_length_seconds 1 --per_device_train_batch_size 2 --max_train_steps 20 --output_dir runs/eat-tiny
"""

import argparse
import logging
import math
import os
import time
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import Accelerator, DistributedType
from accelerate.utils import InitProcessGroupKwargs, set_seed
from tqdm.auto import tqdm
from transformers import SchedulerType, get_scheduler

from ..audio import check_dataset_name, crop_num_frames, load_audio_dataset, load_feature_extractor
from ..hub import check_config_source, check_hub_access, check_model_source
from ..masking_eat import EATMaskGenerator
from ..modeling_eat import EATForPreTraining
from ..optimization import (
    ADAMW_NUMBER_RULES,
    PRETRAINING_WARMUP_FRACTION,
    bad_number,
    optimizer_param_groups,
    warmup_steps_of,
)
from ..outputs import COMMAND_LOG_FILE, check_writable, remove_run_files
from ..runtime import (
    FILE_ONLY,
    CommandError,
    add_num_threads_argument,
    configure_logging,
    configure_threads,
    import_deepspeed_only_when_used,
    log_to_file,
    one_line_errors,
    one_thread_per_worker,
    pin_memory_helps,
    progress_interval,
)
from .checkpoints import (
    TrainingProgress,
    check_checkpoint_fits,
    check_run_folder,
    check_steps_left,
    load_checkpoint,
    load_stream_position,
    resolve_checkpoint,
    save_checkpoint,
)
from .data import (
    EATPretrainingCollator,
    EpochShuffleSampler,
    PretrainingAudioDataset,
    StreamingPretrainingAudioDataset,
    StreamPosition,
    derived_seed,
    split_stream_by_process,
)
from .monitoring import (
    append_log,
    collapse_warning,
    drop_log_rows_after,
    read_log,
    teacher_horizon_warning,
)
from .settings import (
    build_pretraining_config,
    check_supported_distributed_setup,
    check_teacher_precision,
)


# A plain logger, each message logged by the processes it concerns (accelerate's adapter marks every line
# "[RANK 0]", also in a run of one process).
logger = logging.getLogger(__name__)


def build_pretrain_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_eat.pretrain", description="Pre-train EAT on an audio data set with Accelerate."
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", required=True,
                      help="A Hub data set id or a local folder (an audiofolder, or parquet shards for --streaming).")
    data.add_argument("--dataset_config_name", default=None, help="Configuration of the Hub data set.")
    data.add_argument("--train_split_name", default="train", help="Split to pre-train on.")
    data.add_argument("--audio_column_name", default="audio", help="Column holding the audio.")
    data.add_argument("--streaming", action="store_true",
                      help="Stream the data set (needs --max_train_steps); each process reads its own shards.")
    data.add_argument("--max_length_seconds", type=float, default=10.0, help="Random crop length of each clip.")
    data.add_argument("--tile_short_clips", action="store_true",
                      help="Repeat clips shorter than the crop end to end to fill it, instead of padding them: for "
                           "data of short clips (a padded crop gives the teacher targets of padding to predict).")
    data.add_argument("--max_train_samples", type=int, default=None, help="Use only the first N examples.")
    data.add_argument("--feature_extractor_name", default=None,
                      help="Feature extractor folder or preset (audioset, esc50, spc2); default: audioset statistics.")
    data.add_argument("--dataloader_num_workers", type=int, default=0,
                      help="Processes decoding audio and computing fbanks (one thread each); 0 = in the main one.")

    model = parser.add_argument_group("model")
    model.add_argument("--config_name", default=None,
                       help="Size preset (tiny, small, base, large), config JSON or folder; default base. Ignored "
                            "with --model_name_or_path.")
    model.add_argument("--model_name_or_path", default=None,
                       help="Continue from an EATForPreTraining folder, or an EATModel (encoder-only) folder whose "
                            "encoder then seeds both the student and the teacher.")
    model.add_argument("--pretraining_objective", choices=["eat", "maskspec"], default=None,
                       help="eat (UFO loss with an EMA teacher) or maskspec (spectrogram reconstruction); default: "
                            "the config's.")

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--per_device_train_batch_size", type=int, default=12, help="Clips per process and step.")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1,
                       help="Micro-batches summed into one optimizer update.")
    optim.add_argument("--learning_rate", type=float, default=5e-4, help="Peak learning rate.")
    optim.add_argument("--weight_decay", type=float, default=0.05, help="AdamW weight decay (not on 1-D weights).")
    optim.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1.")
    optim.add_argument("--adam_beta2", type=float, default=0.95, help="AdamW beta2.")
    optim.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon.")
    optim.add_argument("--lr_scheduler_type", default="cosine", choices=[kind.value for kind in SchedulerType],
                       help="Learning-rate schedule after the warm-up.")
    optim.add_argument("--min_learning_rate", type=float, default=0.0,
                       help="Floor of the cosine_with_min_lr schedule.")
    optim.add_argument("--num_warmup_steps", type=float, default=PRETRAINING_WARMUP_FRACTION,
                       help="Warm-up updates (>= 1), or a fraction of the run (< 1); default the official 13.3%%.")
    optim.add_argument("--max_train_steps", type=int, default=None,
                       help="Optimizer updates; overrides --num_train_epochs.")
    optim.add_argument("--num_train_epochs", type=int, default=10, help="Passes over the data set.")
    optim.add_argument("--max_grad_norm", type=float, default=4.0, help="Gradient clipping norm.")
    optim.add_argument("--seed", type=int, default=1, help="Seed of the weights, the crops, the masks and the order.")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", required=True, help="Folder of the checkpoints and of the final model.")
    run.add_argument("--overwrite_output_dir", action="store_true",
                     help="Delete the checkpoints of another run in --output_dir instead of refusing to start.")
    run.add_argument("--checkpointing_steps", type=int, default=None, help="Save a resumable state every N steps.")
    run.add_argument("--checkpoints_total_limit", type=int, default=None,
                     help="Keep only the N newest checkpoints (a Base checkpoint is ~1.4 GB); default: all.")
    run.add_argument("--resume_from_checkpoint", default=None, help="A step_N folder, or 'latest' in --output_dir.")
    run.add_argument("--logging_steps", type=int, default=10, help="Log the losses every N steps.")
    run.add_argument("--with_tracking", action="store_true", help="Log the metrics to the --report_to trackers.")
    run.add_argument("--report_to", default="all", help="Trackers for --with_tracking (tensorboard, wandb, ...).")
    run.add_argument("--push_to_hub", action="store_true", help="Upload the final folder to the Hub.")
    run.add_argument("--hub_model_id", default=None, help="Hub repository (default: the --output_dir name).")
    run.add_argument("--hub_token", default=None, help="Hub token for the upload (default: the logged-in one).")
    run.add_argument("--hub_private_repo", action="store_true", help="Create the Hub repository private.")
    add_num_threads_argument(run)
    return parser


def parse_pretrain_args(argv=None):
    parser = build_pretrain_parser()
    args = parser.parse_args(argv)

    if args.streaming and args.max_train_steps is None:
        parser.error("--streaming needs --max_train_steps: a stream has no length to count epochs with.")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    for name in ("checkpointing_steps", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    # 0 saves the initial model (a study's random-init row); below that nothing is meant.
    if args.max_train_steps is not None and args.max_train_steps < 0:
        parser.error("--max_train_steps must be >= 0")
    if args.num_train_epochs < 1:
        parser.error("--num_train_epochs must be >= 1")
    if args.dataloader_num_workers < 0:
        parser.error("--dataloader_num_workers must be >= 0")
    # Beyond AdamW's, the schedule's and the clipping's: each a traceback once the model was built.
    schedule_rules = (
        ("max_grad_norm", "> 0", lambda value: value > 0),
        ("min_learning_rate", ">= 0", lambda value: value >= 0),
        ("num_warmup_steps", ">= 0", lambda value: value >= 0),
    )
    if problem := bad_number(args, ADAMW_NUMBER_RULES + schedule_rules):
        parser.error(problem)
    return args


def build_dataloader(args, config, feature_extractor, process_index: int = 0, num_processes: int = 1):
    num_frames = crop_num_frames(
        args.max_length_seconds, config.patch_size, feature_extractor.sampling_rate, config.max_input_frames
    )
    dataset = load_audio_dataset(
        args.dataset_name, args.dataset_config_name, args.train_split_name, args.audio_column_name,
        streaming=args.streaming, max_samples=args.max_train_samples, split_option="--train_split_name",
    )
    collator = EATPretrainingCollator(
        feature_extractor, EATMaskGenerator(config), num_frames, config.patch_size, seed=args.seed
    )
    common = dict(
        audio_column_name=args.audio_column_name,
        max_length_seconds=args.max_length_seconds,
        seed=args.seed,
        sampling_rate=feature_extractor.sampling_rate,
        tile_short_clips=args.tile_short_clips,
    )
    if args.streaming:
        sampler = None
        train_dataset = StreamingPretrainingAudioDataset(
            split_stream_by_process(dataset, process_index, num_processes), **common
        )
    else:
        train_dataset = PretrainingAudioDataset(dataset, **common)
        clips_per_step = args.per_device_train_batch_size * num_processes
        if len(train_dataset) < clips_per_step:
            per_process = f" x {num_processes} processes" if num_processes > 1 else ""
            limited = ", --max_train_samples" if args.max_train_samples else ""
            raise CommandError(
                f"--per_device_train_batch_size {args.per_device_train_batch_size}{per_process} needs "
                f"{clips_per_step} clips per step, and {args.dataset_name} ({args.train_split_name} split{limited}) "
                f"holds {len(train_dataset)}: pre-training uses whole batches only, so lower the batch size or use "
                "more data."
            )
        sampler = EpochShuffleSampler(len(train_dataset), seed=args.seed)
    dataloader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=args.per_device_train_batch_size,
        sampler=sampler,
        collate_fn=collator,
        num_workers=args.dataloader_num_workers,
        worker_init_fn=one_thread_per_worker,
        drop_last=True,
        pin_memory=pin_memory_helps(),
    )
    return dataloader, sampler, num_frames


def check_before_the_run(args, output_dir: Path):
    """Everything that would otherwise fail after the work, or leave a folder behind, checked in seconds before
    it: the data set's name, the model or config source, the output folder (writable, not another run's) and, for
    `--push_to_hub`, the Hub token. Returns `(checkpoint to resume from or None, old run files to delete)`."""
    check_dataset_name(args.dataset_name)
    if args.model_name_or_path is not None:
        check_model_source(args.model_name_or_path)
    elif args.config_name is not None:
        check_config_source(args.config_name)
    try:
        resume_checkpoint = (
            resolve_checkpoint(args.resume_from_checkpoint, output_dir) if args.resume_from_checkpoint else None
        )
        stale_run_files = check_run_folder(output_dir, resume_checkpoint, args.overwrite_output_dir)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    check_writable(output_dir)
    if args.push_to_hub:
        check_hub_access(args.hub_token)
    return resume_checkpoint, stale_run_files


@one_line_errors
def pretrain_main(argv=None):
    args = parse_pretrain_args(argv)
    output_dir = Path(args.output_dir)
    configure_logging()
    resume_checkpoint, stale_run_files = check_before_the_run(args, output_dir)
    configure_threads(args.num_threads)  # logs its choice

    # DeepSpeed on CPU only sees the other processes when the process group backend is named; a single plain
    # process must not name one (accelerate would then expect a process group).
    is_distributed_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    kwargs_handlers = [InitProcessGroupKwargs(backend="gloo")] if is_distributed_cpu else []
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=str(output_dir),
        kwargs_handlers=kwargs_handlers,
    )
    import_deepspeed_only_when_used(accelerator.distributed_type == DistributedType.DEEPSPEED)
    check_supported_distributed_setup(accelerator)
    # The state's dump ("Distributed environment ... Device: cpu") is for the log file; the console gets the run.
    logger.info(f"process {accelerator.process_index}: {accelerator.state}", extra=FILE_ONLY)
    if not accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
    set_seed(args.seed)

    config = build_pretraining_config(args.config_name, args.model_name_or_path, args.pretraining_objective)
    if args.model_name_or_path is not None:
        model = EATForPreTraining.from_pretrained(args.model_name_or_path, config=config)
    else:
        model = EATForPreTraining(config)
    # from_pretrained may have copied the config: the run reads the model's own.
    config = model.config
    if resume_checkpoint is not None:
        check_checkpoint_fits(model, resume_checkpoint)
    feature_extractor = load_feature_extractor(args.feature_extractor_name, args.model_name_or_path)

    with accelerator.main_process_first():
        train_dataloader, sampler, num_frames = build_dataloader(
            args, config, feature_extractor, accelerator.process_index, accelerator.num_processes
        )
    if args.max_train_steps is None:
        batches_per_process = len(train_dataloader) / accelerator.num_processes
        updates_per_epoch = math.ceil(batches_per_process / args.gradient_accumulation_steps)
        args.max_train_steps = args.num_train_epochs * updates_per_epoch
    if resume_checkpoint is not None:
        check_steps_left(resume_checkpoint, args.max_train_steps)
    # Only now, with the data and the model ready, does the run touch its folder.
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        if stale_run_files:
            logger.info(f"--overwrite_output_dir: deleting {', '.join(path.name for path in stale_run_files)}")
            remove_run_files(stale_run_files)
        log_to_file(output_dir / COMMAND_LOG_FILE)
    accelerator.wait_for_everyone()

    optimizer = torch.optim.AdamW(
        optimizer_param_groups(model, args.weight_decay),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    if model.teacher is not None:
        model.teacher.fit_schedule_to_run(args.max_train_steps)
    if accelerator.is_main_process and (warning := teacher_horizon_warning(model.teacher, args.max_train_steps)):
        logger.warning(warning)
    # The accelerate-wrapped scheduler steps once per process per update, hence the factors (as in the examples).
    lr_scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=warmup_steps_of(args.num_warmup_steps, args.max_train_steps) * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
        scheduler_specific_kwargs=(
            {"min_lr": args.min_learning_rate} if args.lr_scheduler_type == "cosine_with_min_lr" else {}
        ),
    )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # Otherwise accelerate fills DeepSpeed's "auto" clipping with 1.0 rather than --max_grad_norm.
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        if ds_config.get("gradient_clipping", "auto") == "auto":
            ds_config["gradient_clipping"] = args.max_grad_norm
        if args.streaming and ds_config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            # accelerate reads it from a prepared dataloader, and the stream's is not prepared.
            ds_config["train_micro_batch_size_per_gpu"] = args.per_device_train_batch_size

    if args.streaming:
        # Not through accelerate, which would have the main process read the whole stream and hand out its batches:
        # each process reads its own shards (split_stream_by_process).
        model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
        # A stream has no length: the run ends at --max_train_steps, required with --streaming.
        num_epochs = 1 << 30
    else:
        model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            model, optimizer, train_dataloader, lr_scheduler
        )
        updates_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
        num_epochs = math.ceil(args.max_train_steps / updates_per_epoch)
    # Without torch.compile's wrapper too (`--dynamo_backend`): accelerate keeps it by default, and its state dict
    # would save every weight under `_orig_mod.`, a folder `from_pretrained` cannot read.
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    check_teacher_precision(unwrapped)

    if args.with_tracking:
        accelerator.init_trackers("eat_pretraining", {k: str(v) for k, v in vars(args).items()})

    progress = TrainingProgress()
    stream = StreamPosition() if args.streaming else None
    if resume_checkpoint is not None:
        if accelerator.is_main_process:
            logger.info(f"Resuming from {resume_checkpoint}")
        progress = load_checkpoint(accelerator, resume_checkpoint)
        if accelerator.is_main_process:
            # A run killed after this checkpoint logged the steps that follow it; they are replayed now.
            drop_log_rows_after(output_dir, progress.completed_steps)
        if args.streaming:
            stream = load_stream_position(resume_checkpoint, accelerator.process_index, accelerator.num_processes)
            train_dataloader.dataset.resume_from(stream)
            logger.info(f"process {accelerator.process_index}: stream resumed at {stream}")
    # This process's count of skipped examples since the start of this launch; the checkpoint holds the earlier total.
    skipped_bad_audio = torch.zeros((), dtype=torch.long, device=accelerator.device)
    skipped_before_launch = progress.skipped_bad_audio

    total_batch_size = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    if accelerator.is_main_process:
        logger.info(
            f"***** Pre-training {config.pretraining_objective}: {args.max_train_steps} steps of {total_batch_size} "
            f"clips x {num_frames} frames ({args.per_device_train_batch_size} per device x "
            f"{accelerator.num_processes} processes x {args.gradient_accumulation_steps} accumulation), from step "
            f"{progress.completed_steps} *****"
        )
    noise_generator = torch.Generator(device=accelerator.device)
    progress_bar = tqdm(
        total=args.max_train_steps, initial=progress.completed_steps, disable=not accelerator.is_local_main_process,
        desc="pre-training", unit="step", mininterval=progress_interval(), dynamic_ncols=True,
    )
    running = {
        name: []
        for name in ("loss", "frame_loss", "utterance_loss", "target_std", "prediction_std", "target_position_share")
    }
    window_start, window_batches = time.perf_counter(), 0
    # The targets' positional share at the run's first step, what the collapse warning weighs later shares against;
    # a resumed run reads it back from its log.
    initial_position_share = None
    if resume_checkpoint is not None and (log := read_log(output_dir)):
        initial_position_share = log[-1].get("initial_target_position_share")

    model.train()
    # Each process streams its own shards, so each has its own epoch; a map-style epoch is the same everywhere.
    for epoch in range(stream.epoch if args.streaming else progress.epoch, num_epochs):
        if progress.completed_steps >= args.max_train_steps:
            break
        epoch_loader = train_dataloader
        batches_in_epoch = 0
        if args.streaming:
            stream.start_epoch(epoch)
            batches_in_epoch = stream.batches_in_epoch
            train_dataloader.dataset.set_epoch(epoch)
        else:
            if epoch == progress.epoch and progress.batches_in_epoch > 0:
                epoch_loader = accelerator.skip_first_batches(train_dataloader, progress.batches_in_epoch)
                batches_in_epoch = progress.batches_in_epoch
            sampler.set_epoch(epoch)
            epoch_loader.set_epoch(epoch)

        for batch in epoch_loader:
            batches_in_epoch += 1
            window_batches += 1
            example_keys = batch.pop("example_keys")
            if args.streaming:
                stream.advance(example_keys)
                batch = {name: value.to(accelerator.device) for name, value in batch.items()}
            skipped_bad_audio += batch.pop("num_skipped").sum()
            with accelerator.accumulate(model):
                # The decoder's mask noise is keyed by position too, so a resumed run draws what the original drew.
                noise_seed = derived_seed(args.seed, accelerator.process_index, epoch, batches_in_epoch)
                noise_generator.manual_seed(noise_seed)
                outputs = model(**batch, generator=noise_generator)
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if initial_position_share is None and outputs.target_position_share is not None:
                initial_position_share = outputs.target_position_share.detach().float()
            for name in running:
                if getattr(outputs, name) is not None:
                    running[name].append(getattr(outputs, name).detach().float())
            if not accelerator.sync_gradients:
                continue

            # The EMA reads the full student: fine under DDP and ZeRO-2 (replicated parameters); ZeRO-3 is refused.
            unwrapped.update_teacher()
            progress.completed_steps += 1
            progress_bar.update(1)

            if progress.completed_steps % args.logging_steps == 0 or progress.completed_steps == args.max_train_steps:
                elapsed = time.perf_counter() - window_start
                logs = {
                    name: accelerator.reduce(torch.stack(values).mean(), reduction="mean").item()
                    for name, values in running.items()
                    if values
                }
                logs["lr"] = lr_scheduler.get_last_lr()[0]
                if torch.is_tensor(initial_position_share):
                    initial_position_share = accelerator.reduce(initial_position_share, reduction="mean").item()
                logs["initial_target_position_share"] = initial_position_share
                if unwrapped.teacher is not None:
                    logs["ema_decay"] = float(unwrapped.teacher.ema_decay())
                    logs["teacher_distance"] = float(unwrapped.teacher.distance_to(unwrapped.eat))
                    warning = collapse_warning(
                        logs["target_std"], logs["target_position_share"], initial_position_share
                    )
                    if warning is not None and accelerator.is_main_process:
                        logger.warning(warning)
                logs["samples_per_second"] = (
                    window_batches * args.per_device_train_batch_size * accelerator.num_processes / elapsed
                )
                # The bar shows the loss; every measure goes to pretraining_log.jsonl (and the trackers).
                progress_bar.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)
                if args.with_tracking:
                    accelerator.log(logs, step=progress.completed_steps)
                if accelerator.is_main_process:
                    append_log(output_dir, {"step": progress.completed_steps, **logs})
                running = {name: [] for name in running}
                window_start, window_batches = time.perf_counter(), 0

            if args.checkpointing_steps and progress.completed_steps % args.checkpointing_steps == 0:
                progress.epoch, progress.batches_in_epoch = epoch, batches_in_epoch
                progress.skipped_bad_audio = (
                    skipped_before_launch + accelerator.reduce(skipped_bad_audio, reduction="sum").item()
                )
                path = save_checkpoint(
                    accelerator, output_dir, progress, args.checkpoints_total_limit, stream, unwrapped.config
                )
                if accelerator.is_main_process:
                    skipped = progress.skipped_bad_audio
                    logger.info(f"saved {path} (skipped_bad_audio={skipped} so far)", extra=FILE_ONLY)
            if progress.completed_steps >= args.max_train_steps:
                break

    progress_bar.close()
    skipped_total = skipped_before_launch + accelerator.reduce(skipped_bad_audio, reduction="sum").item()
    accelerator.wait_for_everyone()
    unwrapped.save_pretrained(
        output_dir,
        is_main_process=accelerator.is_main_process,
        save_function=accelerator.save,
        state_dict=accelerator.get_state_dict(unwrapped),
    )
    if accelerator.is_main_process:
        feature_extractor.save_pretrained(output_dir)
        teacher_state = (
            f" teacher_num_updates={int(unwrapped.teacher.num_updates)} "
            f"ema_decay={float(unwrapped.teacher.ema_decay()):.8f}"
            if unwrapped.teacher is not None
            else ""
        )
        print(f"pretraining done: step={progress.completed_steps}{teacher_state} skipped_bad_audio={skipped_total}")
        if args.push_to_hub:
            push_to_hub(args, output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    # Without it a rank sometimes aborts at exit (gloo).
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def push_to_hub(args, output_dir: Path) -> None:
    from ..hub import publish_folder, write_model_card

    is_local_data = Path(args.dataset_name).exists()
    write_model_card(
        output_dir,
        base_model=args.model_name_or_path,
        datasets=None if is_local_data else [args.dataset_name],
        tags=["eat", "audio", "self-supervised-learning", "pretraining"],
        description=f"EAT pre-trained ({args.pretraining_objective or 'from its config'}) with modeling_eat.pretrain.",
        model_id=args.hub_model_id,
    )
    publish_folder(output_dir, args.hub_model_id, token=args.hub_token,
                   private=args.hub_private_repo, commit_message="EAT pre-training")


