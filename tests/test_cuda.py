"""The CUDA path: every pooling method and both pooled backbones give on a
GPU what they give on the CPU, forward and backward. Skipped, with the
reason, on machines without CUDA (CI has none); mixed precision on CUDA is
in tests/test_autocast.py."""
import copy

import pytest
import torch
from mmdet.registry import MODELS

from sapool_mmdet.pooling import POOLING, build_pooling

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='no CUDA device on this machine')

TOLERANCE = dict(rtol=1e-3, atol=1e-4)  # TF32 and kernel order on the GPU


def run(module, x):
    x = x.clone().requires_grad_()
    out = module(x)
    outs = out if isinstance(out, tuple) else (out, )
    sum((o * torch.linspace(-1, 1, o.numel(), device=o.device)
         .view_as(o)).sum() for o in outs).backward()
    return [o.detach().cpu() for o in outs], x.grad.cpu()


def compare_devices(module, x):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu_module = copy.deepcopy(module).cuda()
    cpu_out, cpu_grad = run(module, x)
    gpu_out, gpu_grad = run(gpu_module, x.cuda())
    for a, b in zip(cpu_out, gpu_out):
        torch.testing.assert_close(b, a, **TOLERANCE)
    torch.testing.assert_close(gpu_grad, cpu_grad, **TOLERANCE)


@pytest.mark.parametrize('name', sorted(POOLING.module_dict))
@pytest.mark.parametrize('train', [True, False])
def test_pooling_on_cuda_matches_cpu(name, train):
    torch.manual_seed(0)
    pool = build_pooling(dict(type=name), 8, 2).train(train)
    if name == 'GaussianPool' and train:
        pool.eval()  # training samples noise: different streams per device
    compare_devices(pool, torch.randn(2, 8, 11, 14))


@pytest.mark.parametrize('backbone', [
    dict(type='NLPoolResNet', depth=18, pooling=dict(type='NLPool'),
         pool_position='outer', stem_pooling=dict(type='LIPPool')),
    dict(type='NLPoolMobileNetV2', widen_factor=0.35,
         pooling=dict(type='NLPool'), pool_position='inner'),
])
def test_backbones_on_cuda_match_cpu(backbone):
    torch.manual_seed(0)
    model = MODELS.build(backbone).eval()
    compare_devices(model, torch.randn(1, 3, 64, 64))
