# YOLOv3 at 608x608 on the eight COCO driving classes with NLPoolResNet-18:
# the YOLOv3-MobileNetV2 recipe with the backbone swapped (layer2-4 at
# strides 8, 16 and 32). Trained from scratch: BN statistics are learned
# (norm_eval=False) and nothing is frozen.
_base_ = './yolov3_mbv2_driving.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='NLPoolResNet',
        depth=18,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[512, 256, 128]))
