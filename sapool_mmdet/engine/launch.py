"""Run mmdet's own train/test scripts with sapool_mmdet registered.

mmdet ships ``tools/train.py`` and ``tools/test.py`` inside the package (the
copies ``mim train mmdet`` runs). Our tools run those same files after
``import sapool_mmdet``, so they take exactly mmdet's arguments and get
upstream fixes, and they work for configs that lack ``custom_imports``
(importing this module imports ``sapool_mmdet``, which registers our
modules and applies :mod:`sapool_mmdet.compat`).

A ``--out`` results file is written atomically (see
:mod:`sapool_mmdet.engine.durable`); the temporary of that name a killed
test left is removed first. One argument is ours: ``--allow-partial`` accepts a checkpoint whose
weights do not all fit the model (see :mod:`sapool_mmdet.checkpoint`); it
becomes ``--cfg-options allow_partial_checkpoint=True``.
"""
import os.path as osp
import runpy
import sys
from typing import List, Optional

import mmdet

from ..checkpoint import ALLOW_PARTIAL_KEY
from ..fileio import remove_stale_temporaries
from .dist import DistributedSetupError, check_launcher_env

__all__ = [
    'ALLOW_PARTIAL_FLAG', 'launcher_argument', 'mmdet_tool_path',
    'option_value', 'run_mmdet_tool', 'translate_allow_partial'
]

TOOLS = ('train', 'test')
ALLOW_PARTIAL_FLAG = '--allow-partial'


def mmdet_tool_path(name: str) -> str:
    """Path of mmdet's packaged ``tools/<name>.py``."""
    if name not in TOOLS:
        raise ValueError(f'unknown mmdet tool {name!r}; choose from {TOOLS}')
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                    f'{name}.py')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'mmdet {mmdet.__version__} has no packaged {name} script at '
            f'{path}; reinstall mmdet==3.3.0 from a wheel')
    return path


def launcher_argument(argv: List[str]) -> str:
    """The value of ``--launcher`` in ``argv`` ('none' without one)."""
    return option_value(argv, '--launcher') or 'none'


def translate_allow_partial(argv: List[str]) -> List[str]:
    """``argv`` with ``--allow-partial`` turned into the config option
    mmdet's scripts understand."""
    if ALLOW_PARTIAL_FLAG not in argv:
        return list(argv)
    rest = [arg for arg in argv if arg != ALLOW_PARTIAL_FLAG]
    return [*rest, '--cfg-options', f'{ALLOW_PARTIAL_KEY}=True']


def option_value(argv: List[str], option: str) -> Optional[str]:
    """The value of ``option`` in ``argv`` (None without one)."""
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f'{option}='):
            return arg.split('=', 1)[1]
    return None


def run_mmdet_tool(name: str, argv: List[str]) -> None:
    """Run mmdet's ``tools/<name>.py`` with command-line ``argv``.

    The config (and, for 'test', the checkpoint) and, with ``--launcher``,
    the launcher's environment are checked first so a mistake fails with a
    clear message instead of a deep traceback.
    """
    path = mmdet_tool_path(name)
    argv = translate_allow_partial(argv)
    if argv and not argv[0].startswith('-') and not osp.isfile(argv[0]):
        raise SystemExit(f'error: config file {argv[0]!r} not found')
    if (name == 'test' and len(argv) > 1 and not argv[1].startswith('-')
            and not osp.isfile(argv[1])):
        raise SystemExit(f'error: checkpoint file {argv[1]!r} not found')
    try:
        check_launcher_env(launcher_argument(argv))
    except DistributedSetupError as error:
        raise SystemExit(f'error: {error}') from None
    out = option_value(argv, '--out') if name == 'test' else None
    if out is not None and not out.endswith(('.pkl', '.pickle')):
        # mmdet's script asserts this only after building the runner
        raise SystemExit(
            f'error: --out {out!r}: tools/test.py writes the results as a '
            f'pickle, so the file name must end in .pkl or .pickle (for a '
            f'COCO results JSON: --cfg-options '
            f'test_evaluator.outfile_prefix=PREFIX writes PREFIX.bbox.json)')
    if out is not None:
        # what a test killed while writing this results file left
        remove_stale_temporaries(
            osp.dirname(osp.abspath(out)), osp.basename(out))
    saved_argv = sys.argv
    sys.argv = [path, *argv]
    try:
        runpy.run_path(path, run_name='__main__')
    finally:
        sys.argv = saved_argv
