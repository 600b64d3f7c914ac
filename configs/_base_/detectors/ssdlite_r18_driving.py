# SSDlite with NLPoolResNet-18 at 320x320 on the eight COCO driving classes:
# the SSDlite-MobileNetV2 recipe with the backbone swapped. ResNet18's
# layer3 (256 channels) and layer4 (512) have the strides of MobileNetV2's
# two outputs (16 and 32), so the anchors stay as they are. The backbone
# starts from torchvision's ImageNet ResNet-18 as in mmdet's ResNet recipes
# (stem and stage 1 frozen, BN statistics fixed); only the pooling layers
# are new, and they always train (see NLPoolResNet's freeze_pooling).
# From scratch instead:
#   --cfg-options model.backbone.init_cfg=None model.backbone.frozen_stages=-1 model.backbone.norm_eval=False
_base_ = './ssdlite_mbv2_driving.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='NLPoolResNet',
        depth=18,
        out_indices=(2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(
        in_channels=(256, 512),
        out_channels=(256, 512, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(256, 512, 512, 256, 256, 128)))
