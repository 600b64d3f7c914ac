"""One run per work dir: an OS lock (``fcntl.flock``) on ``WORK_DIR/.run.lock``.

The operating system releases the lock when the process ends, however it
ends, so a killed run never leaves its work dir locked. The file records
who holds it (pid, host, start time, command), for the message the next
run gives.
"""
import os
import socket
import sys
import time
from typing import IO, Dict, Optional

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not serialised there
    fcntl = None

__all__ = ['LOCK_NAME', 'WorkDirBusyError', 'hold_work_dir', 'lock_holder']

LOCK_NAME = '.run.lock'
# lock file path -> open file holding the lock, for this process's life
_HELD: Dict[str, IO] = {}


class WorkDirBusyError(RuntimeError):
    """Another live run holds the work dir; the message names it."""


def lock_holder(work_dir: str) -> Optional[str]:
    """What the lock file of ``work_dir`` says about its holder, or None
    when there is none recorded."""
    try:
        with open(os.path.join(work_dir, LOCK_NAME), encoding='utf-8') as f:
            text = f.read().strip()
    except OSError:
        return None
    return text or None


def hold_work_dir(work_dir: str) -> bool:
    """Lock ``work_dir`` for this process until it ends.

    A process that already holds the lock keeps it (a second runner of the
    same script, e.g. testing after training, shares the work dir).

    Args:
        work_dir (str): An existing folder.

    Returns:
        bool: True when the lock was taken now, False when this process
        held it already or the platform has no ``flock``.

    Raises:
        WorkDirBusyError: Another process holds the lock; the message
            names that run (pid, host, start time, command).
    """
    path = os.path.join(os.path.abspath(work_dir), LOCK_NAME)
    if fcntl is None or path in _HELD:
        return False
    f = open(path, 'a+', encoding='utf-8')
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        holder = lock_holder(work_dir) or 'its details are not written yet'
        raise WorkDirBusyError(
            f'work dir {work_dir!r} is in use by another run ({holder}). '
            f'Two runs in one work dir overwrite each other\'s '
            f'checkpoints and logs: wait for that run to end, stop it, '
            f'or choose another --work-dir') from None
    f.seek(0)
    f.truncate()
    started = time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime())
    # orig_argv: the command as typed, before a tool rewrote sys.argv
    command = ' '.join(getattr(sys, 'orig_argv', sys.argv))
    f.write(f'pid {os.getpid()} on {socket.gethostname()}, started '
            f'{started}: {command}\n')
    f.flush()
    _HELD[path] = f
    return True
