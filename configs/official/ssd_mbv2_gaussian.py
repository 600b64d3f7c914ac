# The authors' SSDlite-MobileNetV2 GaussianPool run,
# `mobilenet_v2-gaussian_pool-1222121` (their
# mmdet_repo/configs/network/ssd/mobilenet/gaussian_pool-1222121.py), with
# the SSD schedule of ssd_mbv2_conv.py: Gaussian-based pooling in stages 2,
# 3, 4 and 6, after each stage's first block (`mobilenet_v2`:
# pool_position='inner').
_base_ = './ssd_mbv2_conv.py'

model = dict(
    backbone=dict(pool_position='inner', pooling=dict(type='GaussianPool')))
