"""How a script runs on its machine: torch's intra-op threads chosen from the cores actually free for the process,
one thread per DataLoader worker, pinned memory only where there is a device to pin for, DeepSpeed imported only by
runs that use it; and how a command talks to its user: one log format, the package's own progress and results on
the console with every library's warnings, the libraries' details in a log file of the run, and a mistake the user
can fix as one line naming the problem and the fix (`CommandError`), not a traceback.

Why the thread rule exists: torch's OpenMP threads wait for each other at the end of every parallel region, so when
other processes hold some of the cores, each step waits for the thread that was descheduled. On 2 shared cores that
made a pre-training step 6-8x slower with torch's default (one thread per core) than with one thread (BENCHMARKS.md,
section 6); on an idle machine the extra thread gains under 2x. The rule therefore counts only the cores nobody else
is using right now.
"""

import collections
import contextlib
import difflib
import functools
import gc
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch


logger = logging.getLogger(__name__)

# Long enough to average out a scheduler tick, short enough not to delay a script's start noticeably.
CPU_SAMPLE_SECONDS = 0.5
# /proc/stat counts CPU time in these columns (user nice system idle iowait irq softirq steal); idle and iowait are
# time the CPU was free. Steal (time the hypervisor gave to another machine) is not ours to use.
IDLE_COLUMNS = (3, 4)
# Environment variables through which a user or a launcher (accelerate launch, torchrun) already fixed the count.
THREAD_VARIABLES = ("OMP_NUM_THREADS",)
LOCAL_PROCESS_VARIABLES = ("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")


# ------------------------------------------------------------------------------------------------ what is available


def affinity_cpu_ids() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all of them where the OS has no such call)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cgroup_cpu_quota(
    root: str | Path = "/sys/fs/cgroup", cgroup_file: str | Path = "/proc/self/cgroup"
) -> float | None:
    """CPUs' worth of time the process's cgroup may use (`quota / period`), or None without a limit.

    Reads cgroup v2's `cpu.max` ("200000 100000", or "max 100000" for no limit) of the process's own cgroup, then of
    the root, and cgroup v1's `cpu/cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota -1 = no limit).
    """
    root = Path(root)
    candidates = []
    try:
        for line in Path(cgroup_file).read_text().splitlines():
            hierarchy, _, path = line.partition("::")
            if hierarchy == "0" and path:  # the v2 line: "0::/some/group"
                candidates.append(root / path.lstrip("/") / "cpu.max")
    except OSError:
        pass
    candidates.append(root / "cpu.max")
    for path in candidates:
        try:
            quota, period = path.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def read_cpu_times(stat_file: str | Path = "/proc/stat") -> dict[int, tuple[int, int]]:
    """`{cpu id: (busy ticks, total ticks)}` from the per-CPU lines of /proc/stat; empty where it does not exist."""
    times = {}
    try:
        lines = Path(stat_file).read_text().splitlines()
    except OSError:
        return times
    for line in lines:
        name, *columns = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(value) for value in columns[:8]]
        idle = sum(ticks[column] for column in IDLE_COLUMNS if column < len(ticks))
        times[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return times


def busy_cpus(before: Mapping[int, tuple[int, int]], after: Mapping[int, tuple[int, int]], cpu_ids) -> float:
    """CPUs' worth of busy time between two `read_cpu_times` samples, over `cpu_ids` (0.0 if nothing was sampled)."""
    busy = 0.0
    for cpu in cpu_ids:
        if cpu in before and cpu in after:
            total = after[cpu][1] - before[cpu][1]
            if total > 0:
                busy += (after[cpu][0] - before[cpu][0]) / total
    return busy


def own_cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


def cpus_busy_with_other_work(cpu_ids, seconds: float = CPU_SAMPLE_SECONDS) -> float:
    """How many of `cpu_ids` other processes keep busy, measured over `seconds` (this process's own use taken out).

    Measured now rather than read from the load average: the 1-minute load average trails by about a minute, so it
    still counts a job that just ended (quickstart's pre-training, when its fine-tuning starts) and not yet one that
    just started.
    """
    before, own_before, start = read_cpu_times(), own_cpu_seconds(), time.monotonic()
    if not before:
        return 0.0
    time.sleep(seconds)
    after, own_after, elapsed = read_cpu_times(), own_cpu_seconds(), time.monotonic() - start
    own = (own_after - own_before) / elapsed if elapsed > 0 else 0.0
    return max(0.0, busy_cpus(before, after, cpu_ids) - own)


# What decides how fast 8-bit matrix products run on an x86 CPU, best first: AMX tiles; VNNI, which multiplies uint8
# by int8 and adds into int32 in one instruction (512- or 256-bit); without it AVX-512BW or AVX2 need two
# (`vpmaddubsw` + `vpmaddwd`), whose 16-bit intermediate sums can saturate. ONNX Runtime's kernels pick by these flags.
INT8_INSTRUCTION_SETS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_instruction_set(flags: set[str] | None = None) -> str | None:
    """The best of `INT8_INSTRUCTION_SETS` this CPU has (None: none of them, or not an x86 CPU under Linux)."""
    flags = cpu_flags() if flags is None else flags
    return next((name for name in INT8_INSTRUCTION_SETS if name in flags), None)


# ---------------------------------------------------------------------------------------------------------- the rule


def choose_num_threads(
    affinity_cpus: int, quota_cpus: float | None = None, other_busy_cpus: float = 0.0, local_processes: int = 1
) -> int:
    """Intra-op threads for one process: the CPUs it may run on that nobody else keeps busy, within its cgroup quota,
    shared among the processes of the same run on this machine; at least one.

    Fractions round to the nearest whole CPU: the threads of a CPU that others use half the time still gain.
    """
    free = affinity_cpus - max(0.0, other_busy_cpus)
    if quota_cpus is not None:
        free = min(free, quota_cpus)
    per_process = free / max(1, local_processes)
    return max(1, min(affinity_cpus, math.floor(per_process + 0.5)))


@dataclass(frozen=True)
class ThreadChoice:
    num_threads: int
    reason: str

    def __str__(self) -> str:
        return f"{self.num_threads} intra-op thread{'s' if self.num_threads != 1 else ''} ({self.reason})"


def _int_from_environment(environ: Mapping[str, str], names) -> tuple[str, int] | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return name, int(value)
    return None


def decide_num_threads(
    num_threads: int | None = None,
    environ: Mapping[str, str] = os.environ,
    measure_other_work: Callable[[list[int]], float] = cpus_busy_with_other_work,
) -> ThreadChoice:
    """`--num_threads` when given; else an `OMP_NUM_THREADS` that a user or launcher set; else `choose_num_threads`
    over this process's affinity, cgroup quota, the other work measured now and the processes of this run here."""
    if num_threads is not None:
        if num_threads < 1:
            raise CommandError(
                f"--num_threads must be >= 1, got {num_threads}: pass a positive count, or leave it out."
            )
        return ThreadChoice(num_threads, "--num_threads")
    preset = _int_from_environment(environ, THREAD_VARIABLES)
    if preset is not None:
        return ThreadChoice(preset[1], f"{preset[0]}={preset[1]}; --num_threads overrides")
    cpu_ids = affinity_cpu_ids()
    quota = cgroup_cpu_quota()
    other = measure_other_work(cpu_ids)
    local = _int_from_environment(environ, LOCAL_PROCESS_VARIABLES)
    local_processes = local[1] if local else 1
    chosen = choose_num_threads(len(cpu_ids), quota, other, local_processes)
    parts = [f"{len(cpu_ids)} CPUs available", f"{other:.1f} busy with other work"]
    if quota is not None:
        parts.append(f"cgroup quota {quota:g} CPUs")
    if local_processes > 1:
        parts.append(f"{local_processes} processes of this run on the machine")
    return ThreadChoice(chosen, ", ".join(parts) + "; --num_threads overrides")


def configure_threads(num_threads: int | None = None, environ: Mapping[str, str] = os.environ) -> ThreadChoice:
    """Applies `decide_num_threads` to torch (before the first parallel work: call it at a script's start)."""
    choice = decide_num_threads(num_threads, environ)
    torch.set_num_threads(choice.num_threads)
    logger.info(f"torch runs {choice}")
    return choice


def add_num_threads_argument(parser) -> None:
    """The `--num_threads` option every script shares."""
    parser.add_argument(
        "--num_threads", type=int, default=None,
        help="torch intra-op threads (default: the CPUs free for this process when it starts, see README)",
    )


# ------------------------------------------------------------------------------------------ messages and logs


class CommandError(ValueError):
    """A mistake in a command's inputs that the user can fix (a missing folder, a folder of another model, an
    output that would overwrite work): the message names the problem and the fix, and the command prints it as one
    line and exits with status 1 (`one_line_errors`)."""


def refuse_unknown_preset(option: str, name: str, presets, kind: str, others: str, found_elsewhere: bool) -> None:
    """One rule for a name that is not one of `presets` (size presets, normalization presets): a near miss of one
    (`tinyy`) is refused as such, naming the preset meant, rather than looked up as a folder or on the Hub; any other
    name is refused too unless `found_elsewhere` (it is a folder, a file or a Hub id, which the caller then reads)."""
    close = difflib.get_close_matches(name, list(presets), n=1)
    if close or not found_elsewhere:
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise CommandError(
            f"{option} {name!r} is neither a {kind} ({guess}the presets are {', '.join(presets)}) nor {others}: "
            "pass one of those."
        )


# The exit status of a process ended by SIGINT, as shells report it (128 + 2).
INTERRUPTED_EXIT_STATUS = 130


def one_line_errors(main: Callable) -> Callable:
    """Wraps a command's `main`: a `CommandError` ends the process with `error: <message>` and exit status 1, as
    argparse does for a bad flag, instead of a traceback; Ctrl-C ends it with `interrupted` and status 130, not with
    a traceback into whatever torch was computing (what the command had saved stays, and its rerun says how to
    continue)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except CommandError as error:
            raise SystemExit(f"error: {error}") from None
        except KeyboardInterrupt:
            pass
        # Out of the handler, the interrupted frames are released, and with them the progress bars they held, which
        # print their last state as they close: collected now, so that the line below stays the last one.
        gc.collect()
        print("\ninterrupted (Ctrl-C)", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED_EXIT_STATUS)

    return wrapper


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# A record logged with `extra=FILE_ONLY` goes to the run's log file, not to the console.
FILE_ONLY = {"file_only": True}
# Records kept until the run's log file opens (the set-up before it: thread choice, data and model loading).
_EARLY_RECORDS = 10_000


class _ConsoleFilter(logging.Filter):
    """The console shows this package's own messages and every library's warnings; the libraries' INFO lines
    (configuration dumps, file names written, exporter passes) go to the log file only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        return record.levelno >= logging.WARNING or record.name.split(".")[0] in ("modeling_eat", "__main__")


class _EarlyRecords(logging.Handler):
    """The latest records before the log file opens, for `log_to_file` to write first."""

    def __init__(self, capacity: int = _EARLY_RECORDS):
        super().__init__(logging.INFO)
        self.records = collections.deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _RunLog:
    """The handlers `configure_logging` installed: the console, and the early records `log_to_file` writes."""

    def __init__(self):
        self.console: logging.Handler | None = None
        self.buffer: _EarlyRecords | None = None
        self.file: logging.Handler | None = None


_RUN_LOG = _RunLog()


def configure_logging(level: int = logging.INFO) -> None:
    """One log set-up for every command: `LOG_FORMAT` on stderr for this package's messages (at `level`) and all
    warnings; every library's INFO records kept for `log_to_file`. transformers', datasets' and huggingface_hub's
    loggers are routed through it (instead of their own handlers, which printed each warning a second time), and
    their loading/saving progress bars, which flash by for every local folder, are switched off (the Hub's download
    bars stay). Calling it again replaces what it installed."""
    root = logging.getLogger()
    for handler in (_RUN_LOG.console, _RUN_LOG.buffer, _RUN_LOG.file):
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    console.addFilter(_ConsoleFilter())
    console.setLevel(level)
    buffer = _EarlyRecords()
    _RUN_LOG.console, _RUN_LOG.buffer, _RUN_LOG.file = console, buffer, None
    root.addHandler(console)
    root.addHandler(buffer)
    root.setLevel(min(level, logging.INFO))
    logging.getLogger("modeling_eat").setLevel(level)
    for library in ("transformers", "datasets", "huggingface_hub"):
        try:
            library_logging = __import__(f"{library}.utils.logging", fromlist=["logging"])
        except ImportError:
            continue
        library_logging.enable_propagation()
        library_logging.set_verbosity_info()  # (which installs the library's own handler if it had none yet)
        # Their own stderr handlers would print every INFO line (and bypass the console's filter).
        library_root = logging.getLogger(library)
        for handler in list(library_root.handlers):
            library_root.removeHandler(handler)
    try:
        import transformers
    except ImportError:
        return
    transformers.utils.logging.disable_progress_bar()
    # which also turns off huggingface_hub's download bars, worth seeing for a checkpoint fetched from the Hub
    from huggingface_hub.utils import enable_progress_bars

    enable_progress_bars()


def log_to_file(path) -> Path:
    """From now on, every record (the libraries' INFO lines included) also goes to the file `path`, appended, with
    the records kept since `configure_logging` written first. Call it once the run's folder is known to be right:
    the file is the first thing the run writes there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    if _RUN_LOG.buffer is not None:
        root.removeHandler(_RUN_LOG.buffer)
        for record in _RUN_LOG.buffer.records:
            handler.handle(record)
        _RUN_LOG.buffer = None
    if _RUN_LOG.file is not None:
        root.removeHandler(_RUN_LOG.file)
        _RUN_LOG.file.close()
    _RUN_LOG.file = handler
    root.addHandler(handler)
    return path


def progress_interval() -> float:
    """Seconds between a progress bar's refreshes: twice a second on a terminal, where a refresh redraws one line;
    every 30 s into a file or a pipe, where each refresh is another line of the log."""
    return 0.5 if sys.stderr.isatty() else 30.0


@contextlib.contextmanager
def quiet_progress_bars():
    """No `datasets` progress bars inside: reading a local folder takes a moment, and its bars ("Downloading data
    700/700 files", "Generating train split") only repeat the file count."""
    try:
        import datasets
    except ImportError:
        yield
        return
    were_enabled = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if were_enabled:
            datasets.enable_progress_bars()


# ------------------------------------------------------------------------------------------- workers and devices


def one_thread_per_worker(worker_id: int, then: Callable[[int], None] | None = None) -> None:
    """DataLoader `worker_init_fn`: one intra-op thread (as torch's own worker loop sets) and one BLAS/OpenMP thread
    for numpy's libraries, so that workers decoding and computing fbanks side by side do not oversubscribe the
    cores the training step uses; then `then(worker_id)`, a worker_init_fn it is put in front of."""
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(1)
    if then is not None:
        then(worker_id)


def pin_memory_helps() -> bool:
    """Pinned host memory speeds up copies to an accelerator; without one, torch only warns about it."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def import_deepspeed_only_when_used(deepspeed_in_use: bool) -> None:
    """Stops accelerate from importing DeepSpeed in runs that do not use it.

    accelerate's `unwrap_model` (called by `Trainer.__init__`, `get_state_dict`, `save_state` ...) imports DeepSpeed
    whenever it is installed, only to recognise a `DeepSpeedEngine`; the import costs about a second and, on a
    machine without a GPU, prints DeepSpeed's "unable to detect [an accelerator]" warning in every run. A run not
    under DeepSpeed has no such engine, so the check is answered without the import.
    """
    if deepspeed_in_use or "deepspeed" in sys.modules:
        return
    from accelerate.utils import other

    if hasattr(other, "is_deepspeed_available"):
        other.is_deepspeed_available = lambda: False


def deepspeed_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether `accelerate launch` (or its config) put this process under DeepSpeed."""
    return environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


__all__ = [
    "FILE_ONLY",
    "INTERRUPTED_EXIT_STATUS",
    "LOG_DATE_FORMAT",
    "LOG_FORMAT",
    "CommandError",
    "INT8_INSTRUCTION_SETS",
    "ThreadChoice",
    "add_num_threads_argument",
    "affinity_cpu_ids",
    "busy_cpus",
    "cgroup_cpu_quota",
    "choose_num_threads",
    "configure_logging",
    "configure_threads",
    "cpu_flags",
    "cpus_busy_with_other_work",
    "decide_num_threads",
    "deepspeed_requested",
    "import_deepspeed_only_when_used",
    "int8_instruction_set",
    "log_to_file",
    "one_line_errors",
    "refuse_unknown_preset",
    "one_thread_per_worker",
    "pin_memory_helps",
    "progress_interval",
    "quiet_progress_bars",
    "read_cpu_times",
]
