"""How the package runs exported ONNX graphs in ONNX Runtime: the one place for the session options.

The options, and why (measured in BENCHMARKS.md §7):

- intra-op threads: the CPUs free for this process (`modeling_eat.runtime.decide_num_threads`, the rule the scripts
  use for torch), not ONNX Runtime's default of one thread per physical core pinned to it: like torch's OpenMP
  threads, ONNX Runtime's wait for each other at the end of every parallel operator, so a thread on a core another
  process holds stalls every operator;
- one inter-op thread, operators in sequence: the encoder is a chain, with no branches to run side by side;
- all graph optimisations (layer-norm, GELU and the int8 MatMul fusions);
- worker threads spin between operators within a run, and stop spinning when the run returns
  (`session.force_spinning_stop`): blocking between operators makes every operator wait for a thread to be woken,
  which costs what the scheduler (on a virtual machine, the hypervisor) takes to wake one; spinning after the run
  takes a core from whatever the process does next.
"""

import logging
from pathlib import Path

from ..runtime import decide_num_threads


logger = logging.getLogger(__name__)

ONNXRUNTIME_MISSING = "ONNX Runtime runs the exported .onnx graphs: `pip install modeling-eat[onnx]` (or onnxruntime)"


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(ONNXRUNTIME_MISSING) from error
    return onnxruntime


def session_options(num_threads: int | None = None, spinning: bool = True):
    """`onnxruntime.SessionOptions` for the CPU as described in this module's docstring. `num_threads=None` chooses
    the threads by the package's rule (the CPUs free right now, measured over half a second, or `OMP_NUM_THREADS`);
    `spinning=False` makes idle worker threads block even within a run."""
    onnxruntime = import_onnxruntime()
    choice = decide_num_threads(num_threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = choice.num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    if num_threads is None:
        logger.info(f"ONNX Runtime runs {choice}")
    return options


def onnx_session(path, num_threads: int | None = None, spinning: bool = True):
    """An `onnxruntime.InferenceSession` of the graph at `path` on the CPU, with `session_options`."""
    onnxruntime = import_onnxruntime()
    options = session_options(num_threads, spinning)
    return onnxruntime.InferenceSession(str(Path(path)), options, providers=["CPUExecutionProvider"])


__all__ = ["import_onnxruntime", "onnx_session", "session_options"]
