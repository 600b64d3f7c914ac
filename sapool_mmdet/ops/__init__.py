"""mmcv's NMS, RoIAlign and modulated deformable convolution without
mmcv's compiled ops: on torchvision where its ops load, else in plain
PyTorch (:mod:`.backend` says how they are plugged into ``mmcv.ops``)."""
from .backend import (BACKENDS, ENV_VAR, OpsExtension, compiled_mmcv_ext,
                      get_mmcv_ops_backend, install_mmcv_ops,
                      mmcv_ops_backend, resolve_backend,
                      set_mmcv_ops_backend, torchvision_ops_error)
from .deform_conv import modulated_deform_conv2d
from .nms import nms
from .roi_align import roi_align, roi_align_max_backward

__all__ = [
    'BACKENDS', 'ENV_VAR', 'OpsExtension', 'compiled_mmcv_ext',
    'get_mmcv_ops_backend', 'install_mmcv_ops', 'mmcv_ops_backend',
    'resolve_backend', 'set_mmcv_ops_backend', 'torchvision_ops_error',
    'modulated_deform_conv2d', 'nms', 'roi_align', 'roi_align_max_backward'
]
