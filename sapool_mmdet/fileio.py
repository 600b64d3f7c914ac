"""Atomic file writes: no reader ever sees a half-written output file."""
import os
import tempfile
from contextlib import contextmanager
from typing import IO, Iterator

__all__ = ['atomic_open']


@contextmanager
def atomic_open(path: str, mode: str = 'w', **kwargs) -> Iterator[IO]:
    """Open a temporary file next to ``path`` and rename it to ``path`` when
    the ``with`` block ends without an error.

    Readers see the old file or the complete new one, never a part; an
    error or an interrupt inside the block leaves ``path`` untouched and
    removes the temporary file.

    Args:
        path (str): The file to write.
        mode (str): A write mode for :func:`open`. Defaults to 'w'.
        **kwargs: Passed to :func:`open` (e.g. ``encoding``).

    Yields:
        IO: The open temporary file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(
        dir=directory, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
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
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
