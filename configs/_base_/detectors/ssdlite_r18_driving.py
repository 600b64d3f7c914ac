# SSDlite with NLPoolResNet-18 at 320x320 on the eight COCO driving classes:
# the SSDlite-MobileNetV2 recipe with the backbone swapped. ResNet18's
# layer3 (256 channels) and layer4 (512) have the strides of MobileNetV2's
# two outputs (16 and 32), so the anchors stay as they are. Trained from
# scratch: BN statistics are learned (norm_eval=False) and nothing is frozen.
# With ImageNet weights, add
# init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18'):
# the stock checkpoint loads into every pooled variant (only the pooling
# modules are new).
_base_ = './ssdlite_mbv2_driving.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='NLPoolResNet',
        depth=18,
        out_indices=(2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
        norm_eval=False,
        init_cfg=None),
    neck=dict(
        in_channels=(256, 512),
        out_channels=(256, 512, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(256, 512, 512, 256, 256, 128)))
