# The authors' SSDlite-ResNet18 LIP run, `resnet18-lip-1222` (their
# mmdet_repo/configs/network/ssd/resnet18/ssd_resnet18-lip-1222.py), with
# the schedule of ssd_r18_conv.py: LIP after all blocks of layer2, layer3
# and layer4 (`resnet18`: pool_position='outer').
_base_ = './ssd_r18_conv.py'

model = dict(
    backbone=dict(pool_position='outer', pooling=dict(type='LIPPool')))
