"""One way for every command-line tool to fail on a bad file or a full
disk: a one-line ``error: FILE: CAUSE`` on stderr and exit status 1, no
traceback.

Tools end with ``run_cli(main)`` instead of ``main()``. What counts as
such an error: a file that cannot be read or written (``OSError``:
missing, permission denied, no space left ...), a config with a syntax
error, a truncated or corrupt JSON file, a file that is not UTF-8 text, a
COCO annotation or results file that the package's checks refuse
(:class:`~sapool_mmdet.datasets.CocoFormatError`: a missing file, a
repeated id ..., met by the dataset a training builds), a model and
datasets that do not fit together (:class:`~sapool_mmdet.engine.hooks
.RunConfigError`: a head with another class count, more processes than
images), a checkpoint that cannot be used (:class:`~sapool_mmdet.checkpoint
.CheckpointError`), a work dir held by another run and a distributed
launch that cannot start, an image that does not decode
(:class:`~sapool_mmdet.compat.UnreadableImageError`, an ``OSError``). Raised
in a DataLoader worker, such an error is still one line. Everything else
is a bug and keeps its traceback.
"""
import io
import json
import os
from types import TracebackType
from typing import Any, Callable, Optional

from ..checkpoint import CheckpointError
from ..datasets.coco_checks import CocoFormatError
from .dist import DistributedSetupError
from .hooks import RunConfigError
from .workdir_lock import WorkDirBusyError

__all__ = ['USER_ERRORS', 'describe_error', 'run_cli']

USER_ERRORS = (OSError, SyntaxError, json.JSONDecodeError,
               UnicodeDecodeError, CheckpointError, CocoFormatError,
               WorkDirBusyError, DistributedSetupError, RunConfigError)
# Names under which the functions that read files keep the path.
_PATH_NAMES = ('filename', 'file', 'filepath', 'path', 'fname', 'ann_file')


def _file_in_traceback(tb: Optional[TracebackType]) -> Optional[str]:
    """The file the failing code was reading or writing: the innermost
    frame that holds an open file, or a path argument of an existing
    file."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        values = frame.f_locals
        for value in values.values():
            name = getattr(value, 'name', None)
            if isinstance(value, io.IOBase) and isinstance(name, str):
                return name
        for key in _PATH_NAMES:
            value = values.get(key)
            if isinstance(value, str) and os.path.isfile(value):
                return value
    return None


def _worker_message(text: str) -> str:
    """An error raised in a DataLoader worker reaches the main process
    with the worker's traceback in its message (``Caught X in DataLoader
    worker process 0. Original Traceback ...``): its last line, without
    the exception's name, is the message."""
    if '\nOriginal Traceback' not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    name, sep, message = last.partition(': ')
    if sep and all(part.isidentifier() for part in name.split('.')):
        return message
    return last


def describe_error(error: BaseException) -> str:
    """One line naming the file and the cause of ``error`` (one of
    :data:`USER_ERRORS`), also when it was raised in a DataLoader worker."""
    if isinstance(error, json.JSONDecodeError):
        where = _file_in_traceback(error.__traceback__) or 'a JSON file'
        return (f'{where}: not valid JSON, the file is truncated or '
                f'corrupt ({error.msg} at line {error.lineno} column '
                f'{error.colno})')
    if isinstance(error, UnicodeDecodeError):
        where = _file_in_traceback(error.__traceback__) or 'a text file'
        return f'{where}: not UTF-8 text ({error.reason} at byte ' \
               f'{error.start})'
    if isinstance(error, SyntaxError) and error.lineno:
        # ast.parse of a string (mmengine's config reader) names no file
        where = error.filename if error.filename and os.path.isfile(
            error.filename) else _file_in_traceback(error.__traceback__)
        return (f'{where or error.filename}, line {error.lineno}: syntax '
                f'error: {error.msg}')
    if isinstance(error, OSError) and not isinstance(
            error, (CheckpointError, WorkDirBusyError)):
        if error.strerror is None:  # raised with a message of its own
            return _worker_message(str(error))
        where = error.filename or _file_in_traceback(error.__traceback__)
        cause = error.strerror
        if where is None:
            return cause
        if error.filename2:
            return f'{where} -> {error.filename2}: {cause}'
        return f'{where}: {cause}'
    return _worker_message(str(error))


def run_cli(main: Callable[[], Any]) -> Any:
    """Call a tool's ``main``; an error of :data:`USER_ERRORS` ends the
    process with ``error: <one line>`` on stderr and exit status 1
    (``SystemExit('error: ...')``).

    Returns:
        What ``main`` returns.
    """
    try:
        return main()
    except USER_ERRORS as error:
        # SystemExit with a message: Python prints it to stderr, status 1
        raise SystemExit(f'error: {describe_error(error)}') from None
