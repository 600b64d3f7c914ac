# SSDlite-MobileNetV2 with self-attentive pooling and the first stage at
# stride s1 = 4, 320x320. As the paper, the pooling settings stay those of
# s1 = 1 except the new first pooling layer (stage 1, on the 160x160 stem
# output), which gets the largest patch size. Every feature map is a
# quarter as large, so the anchor strides follow (maps of 5, 3, 2, 1, 1 and
# 1 cells).
_base_ = './ssd_mbv2_nlp.py'

nlp = _base_.nlp
model = dict(
    backbone=dict(
        strides=(4, 2, 2, 2, 1, 2, 1),
        pooling=[
            dict(nlp, patch_size=8),
            dict(nlp, patch_size=8),
            dict(nlp, patch_size=4),
            dict(nlp, patch_size=2),
            None,
            dict(nlp, patch_size=1),
            None,
        ]),
    bbox_head=dict(
        anchor_generator=dict(strides=[64, 107, 160, 320, 320, 320])))
