# SSDlite-MobileNetV2 with stock strided depthwise convs and the first
# stage at stride s1 = 2, 320x320. Every feature map is half as large, so
# the anchor strides follow (maps of 10, 5, 3, 2, 1 and 1 cells).
_base_ = './ssd_mbv2_conv.py'

model = dict(
    backbone=dict(strides=(2, 2, 2, 2, 1, 2, 1)),
    bbox_head=dict(
        anchor_generator=dict(strides=[32, 64, 107, 160, 320, 320])))
