"""Load an mmdet config and build what the analysis tools measure."""
import os.path as osp
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.utils import get_test_pipeline_cfg
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

__all__ = ['load_config', 'check_input_size', 'check_device',
           'input_size_divisor', 'infer_input_size', 'build_from_config',
           'SCOPES']

SCOPES = ('backbone', 'detector')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config (``Config.fromfile`` imports its ``custom_imports``),
    merge ``cfg_options`` (``{'model.backbone.x': v}``, as mmdet's
    ``--cfg-options``) and set mmdet's scope.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} not found')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return cfg


def check_device(device: str) -> torch.device:
    """``device`` as a torch device, if it is the CPU or a CUDA device this
    torch sees; else a ValueError that says what to pass instead (every
    tool's ``--device``, before anything is built).
    """
    try:
        dev = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f'device must be cpu or cuda[:N], got {device!r} '
                         f'({error})') from None
    if dev.type not in ('cpu', 'cuda'):
        raise ValueError(f'device must be cpu or cuda[:N], got {device!r}')
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device {device!r}: this torch '
                             f'({torch.__version__}) sees no CUDA device; '
                             f'use --device cpu')
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f'device {device!r}: only '
                             f'{torch.cuda.device_count()} CUDA device(s)')
    return dev


def input_size_divisor(cfg: Config) -> int:
    """What H and W of a network input must be multiples of: the data
    preprocessor's ``pad_size_divisor`` (1 if it sets none). The detector
    never sees other sizes, and detectors whose neck joins levels of
    different strides (YOLOv3, FPN) need it: their up-sampled deep features
    must match the shallow ones."""
    preprocessor = cfg.get('model', {}).get('data_preprocessor') or {}
    return int(preprocessor.get('pad_size_divisor') or 1)


def check_input_size(size: Sequence[int],
                     cfg: Optional[Config] = None,
                     config: str = 'the config') -> Tuple[int, int]:
    """The one check of an input size, used by every tool that takes one
    (``analyze_model.py``, ``export_onnx.py``, the benchmark tools).

    Args:
        size (Sequence[int]): (H, W).
        cfg (Config, optional): The model's config; if given, H and W must
            be multiples of :func:`input_size_divisor`. Defaults to None.
        config (str): What to call the config in the message.
            Defaults to 'the config'.

    Returns:
        tuple[int, int]: (H, W).

    Raises:
        ValueError: if ``size`` is not two positive integers, or not a
            multiple of the divisor (the message names the nearest valid
            sizes).
    """
    if (len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                              or v < 1 for v in size)):
        raise ValueError(
            f'an input size must be two positive integers H W, got '
            f'{list(size)!r}')
    height, width = int(size[0]), int(size[1])
    divisor = 1 if cfg is None else input_size_divisor(cfg)
    if height % divisor or width % divisor:
        def up(v: int) -> int:
            return -(-v // divisor) * divisor

        raise ValueError(
            f'the data preprocessor of {config} pads every input to a '
            f'multiple of {divisor}, so the model never sees '
            f'{height}x{width} (and a neck that joins levels of different '
            f'strides fails on it); choose H and W divisible by {divisor}, '
            f'e.g. {up(height)} {up(width)}')
    return height, width


def _find_resize(pipeline) -> Optional[dict]:
    for transform in pipeline or []:
        if str(transform.get('type', '')).split('.')[-1] == 'Resize':
            return transform
    return None


def _test_pipeline(cfg: Config) -> list:
    if 'test_dataloader' not in cfg:
        return cfg.get('test_pipeline', [])
    try:
        return get_test_pipeline_cfg(cfg)
    except RuntimeError:
        return []


def infer_input_size(cfg: Config) -> Tuple[int, int]:
    """(H, W) of the network input the config's test pipeline produces.

    The ``scale`` (W, H) of the test pipeline's ``Resize``, rounded up to the
    data preprocessor's ``pad_size_divisor``. With ``keep_ratio=True`` the
    scale bounds the resized image: this is the largest input the pipeline
    produces.

    Raises:
        ValueError: if the test pipeline has no ``Resize`` with a scale.
    """
    resize = _find_resize(_test_pipeline(cfg))
    scale = None if resize is None else resize.get(
        'scale', resize.get('img_scale'))
    if scale is None:
        raise ValueError(
            f'cannot infer the input size of {cfg.filename}: its test '
            f'pipeline has no Resize with a scale; pass --input-size H W')
    width, height = (scale, scale) if isinstance(scale, int) else scale
    divisor = cfg.model.get('data_preprocessor', {}).get(
        'pad_size_divisor', 1)
    return (-(-height // divisor) * divisor, -(-width // divisor) * divisor)


def build_from_config(cfg: Config, scope: str) -> nn.Module:
    """Build ``cfg.model`` (scope 'detector') or only its backbone, in eval
    mode, with its initial (random) weights, SyncBN reverted to BN (as
    mmdet's ``init_detector`` and analysis tools do), so that it runs
    without a process group."""
    if scope not in SCOPES:
        raise ValueError(f'scope must be one of {SCOPES}, got {scope!r}')
    model = revert_sync_batchnorm(
        MODELS.build(cfg.model if scope == 'detector' else
                     cfg.model.backbone))
    # Not ``return model.eval()``: mmdet's backbones override ``train()``
    # and return None.
    model.eval()
    return model
