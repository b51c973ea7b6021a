"""A quiet console: the frameworks' own notices go to a log file, botlib's output stays.

TensorFlow's C++ core (through absl) writes its notices (oneDNN, CPU features, graph
attributes) straight to file descriptor 2 at import and during training, where no Python
setting reaches them; Jupyter kernels started by a pipeline inherit that descriptor and
add their transport warnings. ``filter_native_stderr`` puts a pipe in place of fd 2 and a
thread that forwards every line to the real stderr except those notices, which it
appends to ``logs/frameworks.log``. Python's own ``sys.stderr`` (tracebacks, botlib's
errors and progress bars) keeps writing to the real stderr directly, so nothing botlib
says waits on the thread.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
import warnings
from pathlib import Path

__all__ = ["NOISE", "filter_native_stderr", "is_noise", "silence_framework_warnings"]

#: lines that are frameworks' notices, not botlib's output
NOISE = re.compile(
    r"^(?:"
    r"[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\]"  # absl / TensorFlow C++ log lines
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: "  # cpu_feature_guard's second line
    r"|\[IPKernelApp\] (?:WARNING|ERROR|INFO)"  # kernels' transport warnings / shutdown
    r"|\s*(?:Kernel is running over TCP|KeyboardInterrupt caught in kernel)"
    r"|[\d-]+ [\d:.]+: [IWE] tensorflow/"  # older TensorFlow's format
    r")"
)

_installed: dict[str, object] = {}


def is_noise(line: str) -> bool:
    """Whether ``line`` is a framework notice (to the log file, not the console)."""
    return bool(NOISE.match(line))


def silence_framework_warnings() -> None:
    """Python warnings from the frameworks that say nothing to a botlib user."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # older TensorFlow honours it
    # MLflow's advice to add type hints to PythonModel.predict (botlib's pyfunc wrapper
    # validates its input itself), here and in the notebook kernels a pipeline starts
    quiet = ("ignore::UserWarning:mlflow.pyfunc.utils.data_validation",)
    for rule in quiet:
        warnings.filterwarnings("ignore", category=UserWarning, module=rule.rsplit(":", 1)[1])
    inherited = [r for r in os.environ.get("PYTHONWARNINGS", "").split(",") if r]
    os.environ["PYTHONWARNINGS"] = ",".join(dict.fromkeys([*inherited, *quiet]))
    warnings.filterwarnings("ignore", module=r"keras\.src\..*", category=UserWarning)


def filter_native_stderr(log_file: Path) -> None:
    """Route fd 2 through a filter that sends framework notices to ``log_file`` (once per
    process; child processes inherit the filtered descriptor)."""
    if _installed or os.environ.get("BOTLIB_VERBOSE") == "1":
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return
    # botlib's own Python output keeps the real stderr (no hop through the thread)
    sys.stderr = open(real, "w", buffering=1, closefd=False, errors="replace")  # noqa: SIM115
    os.dup2(write_end, 2)
    os.close(write_end)
    os.set_inheritable(2, True)
    log_file.parent.mkdir(parents=True, exist_ok=True)

    def pump() -> None:
        with open(read_end, "rb", buffering=0) as source, open(log_file, "ab") as log:  # noqa: PTH123
            pending = b""
            while True:
                chunk = source.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    _route(raw + b"\n", real, log)
            if pending:
                _route(pending, real, log)

    thread = threading.Thread(target=pump, name="botlib-stderr-filter", daemon=True)
    thread.start()
    _installed.update(real=real, thread=thread)
    atexit.register(_drain)


def _route(raw: bytes, real: int, log: object) -> None:
    if is_noise(raw.decode("utf-8", "replace")):
        log.write(raw)  # type: ignore[attr-defined]
        log.flush()  # type: ignore[attr-defined]
    else:
        os.write(real, raw)


def _drain() -> None:
    """At exit: close the pipe's last writer here so the thread forwards what is left."""
    real = _installed.get("real")
    thread = _installed.get("thread")
    if not isinstance(real, int) or not isinstance(thread, threading.Thread):
        return
    try:
        os.dup2(real, 2)
    except OSError:
        return
    thread.join(timeout=2.0)
