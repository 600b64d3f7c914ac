"""Reading a detector's saved results: a COCO results JSON, or the pickle of
mmdet's ``tools/test.py --out`` unpickled without running code."""
import io
import pickle
from collections import OrderedDict
from typing import Tuple

import numpy as np
import torch

from ..datasets.coco_checks import CocoFormatError, load_coco_results

__all__ = ['load_mmdet_results', 'load_results']


def _storage_from_bytes(data: bytes):
    # torch pickles a tensor's storage as torch.save() bytes and loads them
    # with weights_only=False; weights_only=True reads the same bytes but
    # cannot run code.
    return torch.load(io.BytesIO(data), weights_only=True)


def _latin1_bytes(text: str, encoding: str) -> bytes:
    # pickle protocol 2 stores bytes as _codecs.encode(text, 'latin1')
    if not isinstance(text, str) or encoding != 'latin1':
        raise pickle.UnpicklingError(
            f'it calls _codecs.encode with {encoding!r}; only latin1 '
            'bytes are allowed')
    return text.encode('latin1')


# What the pickle of tools/test.py --out may reference: a list of dicts of
# tensors, numpy arrays and plain values. Anything else is refused, since
# unpickling an arbitrary global can run code.
_PICKLE_GLOBALS = {
    ('collections', 'OrderedDict'): OrderedDict,
    ('_codecs', 'encode'): _latin1_bytes,
    ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
    ('torch.storage', '_load_from_bytes'): _storage_from_bytes,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
}
# numpy 2 renamed numpy.core to numpy._core (numpy 1.26 has a stub of
# that name); files name either
_NUMPY_CORE = getattr(np, '_core', None)
if _NUMPY_CORE is None or not hasattr(_NUMPY_CORE, 'multiarray'):
    _NUMPY_CORE = np.core
for _module in ('numpy.core', 'numpy._core'):
    _PICKLE_GLOBALS.update({
        (f'{_module}.multiarray', '_reconstruct'):
        _NUMPY_CORE.multiarray._reconstruct,
        (f'{_module}.multiarray', 'scalar'): _NUMPY_CORE.multiarray.scalar,
        (f'{_module}.numeric', '_frombuffer'): _NUMPY_CORE.numeric._frombuffer,
    })


class _ResultsUnpickler(pickle.Unpickler):

    def find_class(self, module: str, name: str):
        found = _PICKLE_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f'it asks for {module}.{name}; a results pickle of mmdet\'s '
                'tools/test.py --out holds only lists, dicts, tensors and '
                'numpy arrays, and other objects are refused because '
                'unpickling them can run code')
        return found


def load_mmdet_results(path: str) -> list:
    """Load the results pickle of mmdet's ``tools/test.py --out``.

    mmdet 3.x dumps a list with one dict per image (``img_id``,
    ``pred_instances`` with ``bboxes`` (x1, y1, x2, y2), ``scores`` and
    ``labels``, and the image's meta information). Only lists, dicts,
    tensors and numpy arrays are unpickled: a file that asks for any other
    object is refused, so a stranger's pickle cannot run code.

    Args:
        path (str): The pickle file.

    Returns:
        list[dict]: One entry per image, as dumped.

    Raises:
        CocoFormatError: if the file cannot be read or unpickled, or asks
            for other objects.
    """
    try:
        with open(path, 'rb') as f:
            return _ResultsUnpickler(f).load()
    except OSError as error:
        raise CocoFormatError(
            f'cannot read {path}: {error.strerror or error}') from error
    except Exception as error:  # unpickling raises anything
        raise CocoFormatError(
            f'{path} is not a readable results pickle: {error}') from error


def _is_pickle(path: str) -> bool:
    if path.endswith(('.pkl', '.pickle')):
        return True
    try:
        with open(path, 'rb') as f:
            # protocol >= 2 pickles open with PROTO (0x80); JSON never does
            return f.read(1) == b'\x80'
    except OSError:
        return False


def load_results(path: str) -> Tuple[str, list]:
    """Load a COCO results JSON or an mmdet results pickle.

    A file ending in ``.pkl``/``.pickle`` or starting like a pickle is read
    with :func:`load_mmdet_results`, anything else as a COCO results JSON.

    Args:
        path (str): The results file.

    Returns:
        tuple[str, list]: ``'coco'`` or ``'mmdet'``, and the entries.

    Raises:
        CocoFormatError: if the file cannot be read or has the wrong
            structure.
    """
    if _is_pickle(path):
        return 'mmdet', load_mmdet_results(path)
    return 'coco', load_coco_results(path)
