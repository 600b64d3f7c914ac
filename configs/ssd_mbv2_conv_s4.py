# SSDlite-MobileNetV2 with strided convs and the first stage at stride
# s1 = 4, 320x320. The authors' baseline (`mobilenet-skip-4222121`) runs
# stage 1's own depthwise conv at stride 4. mmdet's InvertedResidual, which
# our backbone reuses so that its modules and checkpoints stay mmdet's,
# accepts strides 1 and 2 only (an assertion), so stage 1 instead
# down-samples with a 3x3 stride-4 conv + BN + ReLU (ConvPool, the 'Strided
# Conv.' of Table 1) on the stage's input ('pre'), and its block runs at
# stride 1. This adds one dense 3x3 conv (32 -> 32 channels) that the
# authors' network does not have; every other stage keeps its stock strided
# depthwise conv. Every feature map is a quarter as large, so the anchor
# strides follow (maps of 5, 3, 2, 1, 1 and 1 cells).
_base_ = './ssd_mbv2_conv.py'

model = dict(
    backbone=dict(
        strides=(4, 2, 2, 2, 1, 2, 1),
        pool_position='pre',
        pooling=[dict(type='ConvPool'), None, None, None, None, None, None]),
    bbox_head=dict(
        anchor_generator=dict(strides=[64, 107, 160, 320, 320, 320])))
