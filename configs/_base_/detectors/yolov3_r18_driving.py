# YOLOv3 at 608x608 on the eight COCO driving classes with NLPoolResNet-18:
# the YOLOv3-MobileNetV2 recipe with the backbone swapped (layer2-4 at
# strides 8, 16 and 32). The backbone starts from torchvision's ImageNet
# ResNet-18 as in mmdet's ResNet recipes (stem and stage 1 frozen, BN
# statistics fixed); only the pooling layers are new, and they always train.
# From scratch instead:
#   --cfg-options model.backbone.init_cfg=None model.backbone.frozen_stages=-1 model.backbone.norm_eval=False
_base_ = './yolov3_mbv2_driving.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='NLPoolResNet',
        depth=18,
        out_indices=(1, 2, 3),
        frozen_stages=1,
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[512, 256, 128]))
