"""Atomic file writes: no reader ever sees a half-written output file.

Every file the package writes goes to a temporary name in the folder of
its final name (``.NAME.XXXXXXXX.tmp``), is flushed and fsynced, and is
renamed into place. A process that is killed inside the write leaves
only such a temporary behind; :func:`remove_stale_temporaries` removes
them at the next start.
"""
import errno
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from typing import IO, Iterator, List, Optional

__all__ = [
    'TEMPORARY_NAME', 'atomic_open', 'atomic_write_bytes',
    'check_free_space', 'remove_stale_temporaries', 'scratch_directory'
]

# ``.{final name}.{8 characters of mkstemp}.tmp``
TEMPORARY_NAME = re.compile(r'^\..+\.[A-Za-z0-9_]{8}\.tmp$')
# Room left beside a file so the file system can write its metadata.
FREE_SPACE_MARGIN = 1 << 20


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (no-op where directories
    cannot be opened, e.g. on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_free_space(path: str, num_bytes: int) -> None:
    """Refuse to start writing ``num_bytes`` to ``path`` when its file
    system has less room than that (plus 1 MiB).

    Args:
        path (str): The file about to be written; its folder must exist.
        num_bytes (int): Its size in bytes.

    Raises:
        OSError: ``errno.ENOSPC``, naming the file, the bytes needed and
            the bytes free.
    """
    directory = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(directory).free
    if free < num_bytes + FREE_SPACE_MARGIN:
        raise OSError(
            errno.ENOSPC,
            f'No space left on device: writing {num_bytes / 2**20:.1f} MiB '
            f'needs {(num_bytes + FREE_SPACE_MARGIN) / 2**20:.1f} MiB, '
            f'{free / 2**20:.1f} MiB free in {directory}; nothing was '
            f'written or removed', path)


@contextmanager
def atomic_open(path: str,
                mode: str = 'w',
                expected_size: Optional[int] = None,
                **kwargs) -> Iterator[IO]:
    """Open a temporary file next to ``path`` and rename it to ``path`` when
    the ``with`` block ends without an error.

    Readers see the old file or the complete new one, never a part; an
    error or an interrupt inside the block leaves ``path`` untouched and
    removes the temporary file (a kill that gives no chance to clean up
    leaves it for :func:`remove_stale_temporaries`). The data is fsynced
    before the rename and the rename is fsynced after it, so a power loss
    does not leave an empty file under the final name either.

    Args:
        path (str): The file to write.
        mode (str): A write mode for :func:`open`. Defaults to 'w'.
        expected_size (int, optional): Bytes about to be written; when
            given, a file system without room for them is reported before
            anything is written (see :func:`check_free_space`).
        **kwargs: Passed to :func:`open` (e.g. ``encoding``).

    Yields:
        IO: The open temporary file.

    Raises:
        OSError: Creating, writing or renaming failed; ``filename`` is
            ``path`` when the system error did not name a file (e.g. a full
            disk during ``write``).
    """
    directory = os.path.dirname(os.path.abspath(path))
    if expected_size is not None:
        check_free_space(path, expected_size)
    try:
        fd, tmp_path = tempfile.mkstemp(
            dir=directory, prefix=f'.{os.path.basename(path)}.',
            suffix='.tmp')
    except OSError as error:
        error.filename = path
        raise
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp creates the file private (0600); give it the permissions
        # a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException as error:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError) and error.filename is None:
            error.filename = path
        raise
    _fsync_directory(directory)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_open`, refusing
    before the first byte when the disk cannot hold it.

    Raises:
        OSError: As :func:`atomic_open`; ``errno.ENOSPC`` up front when
            the file system has no room for ``data``.
    """
    with atomic_open(path, 'wb', expected_size=len(data)) as f:
        f.write(data)


def remove_stale_temporaries(directory: str,
                             final_name: Optional[str] = None) -> List[str]:
    """Remove the temporary files that writes through :func:`atomic_open`
    left in ``directory`` when their process was killed.

    Only call this while no other process writes into ``directory`` (a
    training run holds its work dir's lock when it calls it), or name the
    one file about to be written.

    Args:
        directory (str): The folder to clean; a missing folder is fine.
        final_name (str, optional): Only the temporaries of this file name.
            Defaults to None: all.

    Returns:
        list[str]: Paths of the files removed.
    """
    removed = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    prefix = '.' if final_name is None else f'.{final_name}.'
    for name in sorted(names):
        path = os.path.join(directory, name)
        if name.startswith(prefix) and TEMPORARY_NAME.match(name) \
                and os.path.isfile(path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextmanager
def scratch_directory(prefix: str) -> Iterator[str]:
    """A private folder in the system's temporary directory (``$TMPDIR``),
    removed when the block ends; folders of this ``prefix`` that killed
    processes left behind are removed first.

    The folder is named ``{prefix}_{pid}_XXXXXXXX``: a folder whose process
    no longer runs is an orphan.

    Args:
        prefix (str): Names the kind of scratch work, e.g. 'sapool_int8'.

    Yields:
        str: The folder.
    """
    parent = tempfile.gettempdir()
    orphan = re.compile(rf'^{re.escape(prefix)}_(\d+)_[A-Za-z0-9_]+$')
    for name in os.listdir(parent):
        match = orphan.match(name)
        if match and not _process_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f'{prefix}_{os.getpid()}_',
                                     dir=parent) as folder:
        yield folder
