"""modeling_eat/runtime.py: the thread rule (inputs -> thread count, no timings: those are in BENCHMARKS.md), what it
reads from the machine, the DataLoader worker set-up, and DeepSpeed left unimported by runs that do not use it."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from modeling_eat import runtime
from modeling_eat.runtime import (
    busy_cpus,
    cgroup_cpu_quota,
    choose_num_threads,
    decide_num_threads,
    one_thread_per_worker,
    read_cpu_times,
)


@pytest.mark.parametrize(
    "affinity, quota, other_busy, local_processes, expected",
    [
        (2, None, 0.0, 1, 2),  # idle: every core
        (2, None, 2.0, 1, 1),  # both cores held by others: one thread, never zero
        (2, None, 3.5, 1, 1),
        (2, None, 1.0, 1, 1),  # one core held: one thread
        (2, None, 0.4, 1, 2),  # a core busy less than half the time still counts as free
        (2, None, 0.6, 1, 1),
        (16, None, 8.0, 1, 8),
        (16, None, 0.0, 4, 4),  # four processes of one run share the cores
        (16, None, 8.0, 4, 2),
        (2, None, 0.0, 4, 1),
        (64, 4.0, 0.0, 1, 4),  # the cgroup quota caps the affinity
        (64, 2.5, 0.0, 1, 3),
        (64, 4.0, 62.0, 1, 2),  # ... and others' work on the cores still counts
        (2, 8.0, 0.0, 1, 2),  # a quota above the cores changes nothing
        (4, None, -1.0, 1, 4),
    ],
)
def test_thread_rule(affinity, quota, other_busy, local_processes, expected):
    assert choose_num_threads(affinity, quota, other_busy, local_processes) == expected


def test_explicit_count_then_the_environment_then_the_rule(monkeypatch):
    measured = []

    def busy_with_others(cpu_ids):
        measured.append(cpu_ids)
        return 1.0

    monkeypatch.setattr(runtime, "affinity_cpu_ids", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda: None)

    choice = decide_num_threads(3, environ={"OMP_NUM_THREADS": "1"}, measure_other_work=busy_with_others)
    assert choice.num_threads == 3 and choice.reason == "--num_threads"
    choice = decide_num_threads(None, environ={"OMP_NUM_THREADS": "2"}, measure_other_work=busy_with_others)
    assert choice.num_threads == 2 and "OMP_NUM_THREADS=2" in choice.reason
    assert measured == []  # nothing sampled when the count is given

    for environ in ({}, {"OMP_NUM_THREADS": ""}, {"OMP_NUM_THREADS": "0"}, {"OMP_NUM_THREADS": "all"}):
        choice = decide_num_threads(None, environ=environ, measure_other_work=busy_with_others)
        assert choice.num_threads == 3, environ
        assert "4 CPUs available, 1.0 busy with other work; --num_threads overrides" in str(choice)
    assert measured[-1] == [0, 1, 2, 3]
    two_processes = decide_num_threads(None, environ={"LOCAL_WORLD_SIZE": "2"}, measure_other_work=busy_with_others)
    assert two_processes.num_threads == 2 and "2 processes of this run" in two_processes.reason

    with pytest.raises(ValueError, match="--num_threads must be >= 1"):
        decide_num_threads(0)


def test_configure_threads_applies_the_choice():
    previous = torch.get_num_threads()
    try:
        assert runtime.configure_threads(2).num_threads == 2 and torch.get_num_threads() == 2
        assert runtime.configure_threads(environ={"OMP_NUM_THREADS": "1"}).num_threads == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_cgroup_quota_v2_v1_and_none(tmp_path):
    v2 = tmp_path / "v2"
    (v2 / "jobs" / "mine").mkdir(parents=True)
    (v2 / "jobs" / "mine" / "cpu.max").write_text("150000 100000\n")
    (v2 / "cpu.max").write_text("max 100000\n")
    cgroup_file = tmp_path / "cgroup"
    cgroup_file.write_text("0::/jobs/mine\n")
    assert cgroup_cpu_quota(v2, cgroup_file) == 1.5  # the process's own group, not the root's
    cgroup_file.write_text("0::/\n")
    assert cgroup_cpu_quota(v2, cgroup_file) is None  # "max": no limit

    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1, tmp_path / "missing") == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1, tmp_path / "missing") is None
    assert cgroup_cpu_quota(tmp_path / "nothing", tmp_path / "missing") is None


def test_busy_time_of_the_process_cpus_from_proc_stat(tmp_path):
    def stat(cpu0, cpu1, cpu2):
        # user nice system idle iowait irq softirq steal
        lines = ["cpu  1 1 1 1 1 1 1 1"] + [f"cpu{i} " + " ".join(map(str, ticks)) for i, ticks in
                                             enumerate((cpu0, cpu1, cpu2))]
        path = tmp_path / "stat"
        path.write_text("\n".join(lines + ["intr 5 6", "ctxt 7"]) + "\n")
        return read_cpu_times(path)

    before = stat((100, 0, 0, 100, 0, 0, 0, 0), (0, 0, 0, 200, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0))
    assert before[0] == (100, 200) and set(before) == {0, 1, 2}
    # cpu0 fully busy (user + steal), cpu1 a quarter busy (iowait counts as free), cpu2 not ours.
    after = stat((180, 0, 10, 100, 0, 0, 0, 10), (0, 0, 25, 250, 25, 0, 0, 0), (100, 0, 0, 0, 0, 0, 0, 0))
    assert busy_cpus(before, after, [0, 1]) == pytest.approx(1.25)
    assert busy_cpus(before, after, [0, 1, 2]) == pytest.approx(2.25)
    assert busy_cpus({}, after, [0, 1]) == 0.0
    assert read_cpu_times(tmp_path / "missing") == {}


def test_measured_other_work_leaves_out_this_process(monkeypatch):
    samples = iter([{0: (0, 100), 1: (0, 100)}, {0: (100, 200), 1: (50, 200)}])
    own = iter([10.0, 10.5])
    clock = iter([0.0, 0.5])
    monkeypatch.setattr(runtime, "read_cpu_times", lambda: next(samples))
    monkeypatch.setattr(runtime, "own_cpu_seconds", lambda: next(own))
    monkeypatch.setattr(runtime.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(runtime.time, "sleep", lambda seconds: None)
    # 1.5 CPUs busy in all, 1.0 of them this process's own.
    assert runtime.cpus_busy_with_other_work([0, 1]) == pytest.approx(0.5)


class _ThreadCounts(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        from threadpoolctl import threadpool_info

        return {"torch": torch.get_num_threads(), "pools": {pool["internal_api"]: pool["num_threads"]
                                                            for pool in threadpool_info()}}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every pool has one thread anyway")
def test_dataloader_workers_get_one_thread_each():
    import numpy  # noqa: F401  (loads numpy's OpenBLAS, whose pool a worker inherits)

    loader = torch.utils.data.DataLoader(
        _ThreadCounts(), batch_size=None, num_workers=1, worker_init_fn=one_thread_per_worker
    )
    counts = next(iter(loader))
    assert counts["torch"] == 1
    assert counts["pools"] and set(counts["pools"].values()) == {1}, counts


DEEPSPEED_PROBE = textwrap.dedent(
    """
    import sys
    import torch
    from accelerate import Accelerator
    from modeling_eat.runtime import import_deepspeed_only_when_used

    accelerator = Accelerator(cpu=True)
    if sys.argv[1] == "hide":
        import_deepspeed_only_when_used(False)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    accelerator.unwrap_model(model)
    accelerator.get_state_dict(model)
    print("deepspeed imported:", "deepspeed" in sys.modules)
    """
)


def test_deepspeed_is_imported_only_by_runs_that_use_it():
    def probe(mode: str) -> str:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run([sys.executable, "-c", DEEPSPEED_PROBE, mode], capture_output=True, text=True,
                                env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    hidden = probe("hide")
    assert "deepspeed imported: False" in hidden and "unable to detect" not in hidden
    # Without it, accelerate imports DeepSpeed, which warns on a machine without a GPU.
    shown = probe("show")
    assert "deepspeed imported: True" in shown
    if not torch.cuda.is_available():
        assert "unable to detect" in shown


def test_a_command_ends_in_one_line_on_a_mistake_and_on_ctrl_c(capsys):
    @runtime.one_line_errors
    def threads(count):
        runtime.configure_threads(count)

    with pytest.raises(SystemExit) as error:
        threads(0)
    assert error.value.code == (
        "error: --num_threads must be >= 1, got 0: pass a positive count, or leave it out."
    )

    class ProgressBar:
        """Prints its last state when it is closed, as tqdm does."""

        def __init__(self):
            self.cycle = self  # held by a reference cycle, as a generator's frame holds its bar

        def __del__(self):
            print("pre-training: 38/20000", file=sys.stderr)

    @runtime.one_line_errors
    def interrupted():
        bar = ProgressBar()  # noqa: F841
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as error:
        interrupted()
    assert error.value.code == runtime.INTERRUPTED_EXIT_STATUS == 130
    assert capsys.readouterr().err == "pre-training: 38/20000\n\ninterrupted (Ctrl-C)\n"


def test_a_hub_warning_reaches_the_console_once(capfd):
    """huggingface_hub's own stderr handler printed each of its warnings (a retry, an unreachable Hub) a second time,
    without the log format, beside the console's line."""
    import logging

    hub_logger = logging.getLogger("huggingface_hub")
    assert hub_logger.handlers  # its own, installed when it was imported
    runtime.configure_logging()
    assert hub_logger.handlers == [] and hub_logger.propagate
    logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
    lines = [line for line in capfd.readouterr().err.splitlines() if "Retrying" in line]
    assert len(lines) == 1 and lines[0].endswith("WARNING huggingface_hub.utils._http: Retrying in 1s [Retry 1/5].")
