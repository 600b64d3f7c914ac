# The authors' Faster R-CNN-ResNet18-FPN LIP run, `resnet18-lip-1222` (their
# mmdet_repo/configs/network/faster_rcnn/resnet18/resnet18_lip.py), with the
# schedule of faster-rcnn_r18_conv.py: LIP after all blocks of layer2,
# layer3 and layer4 (`resnet18`: pool_position='outer').
_base_ = './faster-rcnn_r18_conv.py'

model = dict(
    backbone=dict(pool_position='outer', pooling=dict(type='LIPPool')))
