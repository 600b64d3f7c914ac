# SSDlite-MobileNetV2 at 320x320 (mmdet's recipe, unchanged) on the eight
# COCO driving classes, with NLPoolMobileNetV2 as the backbone. With
# pooling=None, as here, the backbone is mmdet's MobileNetV2.
_base_ = [
    'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
    '../datasets/coco_driving.py',
]

model = dict(
    backbone=dict(type='NLPoolMobileNetV2'),
    bbox_head=dict(num_classes=8))

train_dataloader = dict(dataset=dict(dataset={{_base_.driving_train_dataset}}))
val_dataloader = dict(dataset={{_base_.driving_val_dataset}})
test_dataloader = val_dataloader
val_evaluator = {{_base_.driving_evaluator}}
test_evaluator = val_evaluator
