# The authors' SSDlite-ResNet18 GaussianPool run,
# `resnet18-gaussian_pool-1222` (their
# mmdet_repo/configs/network/ssd/resnet18/ssd_resnet18-gaussian_pool-1222.py),
# with the schedule of ssd_r18_conv.py: Gaussian-based pooling after all
# blocks of layer2, layer3 and layer4 (`resnet18`: pool_position='outer').
_base_ = './ssd_r18_conv.py'

model = dict(
    backbone=dict(pool_position='outer', pooling=dict(type='GaussianPool')))
