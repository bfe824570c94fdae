"""Processes that end with the process that started them (Linux ``PR_SET_PDEATHSIG``).

A job's child process dies with its worker, an export's render processes with the job's
child, the CLI's server with the CLI: a killed parent leaves nothing running.
"""

import ctypes
import os
import signal


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when ``parent`` exits (Linux).

    Call it first thing in the child, with the parent's pid read before the fork or spawn:
    a parent already gone by then ends the child at once.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the parent still kills us on cancel and timeout
        return
    if os.getppid() != parent:
        os._exit(1)
