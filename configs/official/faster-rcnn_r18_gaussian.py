# The authors' Faster R-CNN-ResNet18-FPN GaussianPool run,
# `resnet18_v2-gaussian_pool-1222` (their
# mmdet_repo/configs/network/faster_rcnn/resnet18/resnet18_gaussian_pool.py),
# with the schedule of faster-rcnn_r18_conv.py. `resnet18_v2` is their
# second ResNet, whose first block of a pooled stage runs at stride 1 (its
# 1x1 shortcut too) and is followed by the pooling: pool_position='inner',
# unlike their other ResNet18 runs.
_base_ = './faster-rcnn_r18_conv.py'

model = dict(
    backbone=dict(pool_position='inner', pooling=dict(type='GaussianPool')))
