"""``python -m sapool_mmdet``: the stack this package runs on and the
compatibility fixes it applied or skipped there."""
import mmcv
import mmdet
import mmengine
import torch

import sapool_mmdet
from sapool_mmdet.compat import COMPAT_STATUS

print(f'sapool_mmdet {sapool_mmdet.__version__}: torch {torch.__version__} '
      f'(CUDA available: {torch.cuda.is_available()}), mmcv '
      f'{mmcv.__version__}, mmengine {mmengine.__version__}, mmdet '
      f'{mmdet.__version__}')
for fix, status in COMPAT_STATUS.items():
    print(f'compat {fix}: {status}')
