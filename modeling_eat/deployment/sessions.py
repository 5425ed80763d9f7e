"""How the package runs exported ONNX graphs in ONNX Runtime: the one place for the session options.

The options, and why (measured on EAT-Base, 2 cores: BENCHMARKS.md §7):

- intra-op threads: the CPUs free for this process (`modeling_eat.runtime.decide_num_threads`, the rule the scripts
  use for torch), not ONNX Runtime's default of one thread per physical core, pinned: like torch's OpenMP threads,
  ONNX Runtime's wait for each other at the end of every parallel operator, so a thread on a core that another
  process holds stalls every operator;
- worker threads block when they have nothing to do (`session.intra_op.allow_spinning=0`) instead of spinning:
  10-14% faster when other processes want the cores (1455 against 1594-1652 ms), where spinning threads take the
  time the work needs;
- one inter-op thread, operators in sequence: the encoder is a chain, with no branches to run side by side;
- all graph optimisations, ONNX Runtime's default (fewer gained nothing measurable for fp32, and lose the fused
  int8 MatMul: 1.18x slower).

What none of these options changes is what mostly sets the fp32 graph's speed-up over eager PyTorch: the CPU's
kernels. On an AMD CPU with AVX-512, ONNX Runtime's MatMul (MLAS) ran 3x faster than torch's (MKL).
"""

import logging
from pathlib import Path

from ..runtime import FILE_ONLY, decide_num_threads


logger = logging.getLogger(__name__)

ONNXRUNTIME_MISSING = "ONNX Runtime runs the exported .onnx graphs: `pip install modeling-eat[onnx]` (or onnxruntime)"


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(ONNXRUNTIME_MISSING) from error
    return onnxruntime


def session_options(num_threads: int | None = None, spinning: bool = False):
    """`onnxruntime.SessionOptions` for the CPU as described in this module's docstring. `num_threads=None` chooses
    the threads by the package's rule (the CPUs free right now, measured over half a second, or `OMP_NUM_THREADS`);
    `spinning=True` lets idle worker threads spin within a run (stopping when it returns), for a host where waking a
    thread is slow and no other process wants the cores."""
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
        # In the command's log file: a command opens several sessions, and its console keeps to its results.
        logger.info(f"ONNX Runtime runs {choice}", extra=FILE_ONLY)
    return options


def onnx_session(path, num_threads: int | None = None, spinning: bool = False):
    """An `onnxruntime.InferenceSession` of the graph at `path` on the CPU, with `session_options`."""
    onnxruntime = import_onnxruntime()
    options = session_options(num_threads, spinning)
    return onnxruntime.InferenceSession(str(Path(path)), options, providers=["CPUExecutionProvider"])


__all__ = ["import_onnxruntime", "onnx_session", "session_options"]
