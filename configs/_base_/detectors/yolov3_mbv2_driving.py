# YOLOv3 at 608x608 (mmdet's Darknet-53 recipe: multi-scale training, 273
# epochs) on the eight COCO driving classes, with NLPoolMobileNetV2 in place
# of Darknet-53, with the settings of mmdet's YOLOv3-MobileNetV2 (LeakyReLU,
# ImageNet normalisation) except the deepest output: the final 1x1 conv
# (1280 channels, stride 32, as SSDlite reads it) rather than stage 7, so no
# backbone parameter is left unused. The other outputs are stages 3 and 5
# (strides 8 and 16). The neck and head keep the Darknet-53 widths, so every
# backbone of the grid has the same detector on top. Like mmdet's
# YOLOv3-MobileNetV2, the backbone starts from mmdet's ImageNet MobileNetV2
# (the final 1x1 conv included); only the pooling layers are new.
# From scratch instead: --cfg-options model.backbone.init_cfg=None
_base_ = [
    'mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py',
    '../datasets/coco_driving.py',
]

model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,
        type='NLPoolMobileNetV2',
        out_indices=(2, 4, 7),
        act_cfg=dict(type='LeakyReLU', negative_slope=0.1),
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://mmdet/mobilenet_v2')),
    neck=dict(in_channels=[1280, 96, 32]),
    bbox_head=dict(num_classes=8))

train_dataloader = dict(dataset={{_base_.driving_train_dataset}})
val_dataloader = dict(dataset={{_base_.driving_val_dataset}})
test_dataloader = val_dataloader
val_evaluator = {{_base_.driving_evaluator}}
test_evaluator = val_evaluator
