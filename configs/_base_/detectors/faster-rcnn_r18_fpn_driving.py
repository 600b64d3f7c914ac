# Faster R-CNN with FPN at 1333x800 on the eight COCO driving classes with
# NLPoolResNet-18: the ResNet-50 recipe with depth 18 and the FPN reading
# its narrower stages. Starts from torchvision's ImageNet ResNet-18, frozen
# and normalised as the ResNet-50 base.
_base_ = './faster-rcnn_r50_fpn_driving.py'

model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
