# SSDlite with MobileNetV2-0.35x (widen_factor=0.35) at 320x320 on the eight
# COCO driving classes: the SSDlite-MobileNetV2 recipe with the narrower
# backbone. Its stride-16 output has make_divisible(96 * 0.35, 8) = 32
# channels; the last 1x1 conv keeps 1280 (MobileNetV2 widens it only for
# widen_factor > 1).
_base_ = './ssdlite_mbv2_driving.py'

model = dict(
    backbone=dict(widen_factor=0.35),
    neck=dict(
        in_channels=(32, 1280),
        out_channels=(32, 1280, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(32, 1280, 512, 256, 256, 128)))
