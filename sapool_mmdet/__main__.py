"""``python -m sapool_mmdet``: the stack this package runs on, the backend
of mmcv's ops and the compatibility fixes it applied or skipped there."""
import mmcv
import mmdet
import mmengine
import torch

import sapool_mmdet
from sapool_mmdet.compat import COMPAT_STATUS
from sapool_mmdet.ops import (ENV_VAR, compiled_mmcv_ext,
                              get_mmcv_ops_backend)

print(f'sapool_mmdet {sapool_mmdet.__version__}: torch {torch.__version__} '
      f'(CUDA available: {torch.cuda.is_available()}), mmcv '
      f'{mmcv.__version__}, mmengine {mmengine.__version__}, mmdet '
      f'{mmdet.__version__}')
print(f"mmcv ops (NMS, RoIAlign, modulated deform conv): "
      f"{get_mmcv_ops_backend()} (mmcv's compiled ops "
      f"{'present' if compiled_mmcv_ext() is not None else 'absent'}; "
      f'{ENV_VAR} chooses)')
for fix, status in COMPAT_STATUS.items():
    print(f'compat {fix}: {status}')
