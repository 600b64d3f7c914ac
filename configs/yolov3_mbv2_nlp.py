# YOLOv3-MobileNetV2 with self-attentive pooling in every down-sampling
# stage, s1 = 1, 608x608. 2 heads and embed_ratio 1 are the paper's Table 1
# settings; the paper gives the patch sizes only as the set {1, 2, 4, 8}
# (larger early, 1 for the later layers), so the per-stage choice is ours:
# stages 2, 3, 4 and 6 pool maps of 304, 152, 76 and 38 pixels with
# patches 8, 8, 4 and 2 (38x38, then 19x19 tokens). Inner-stage pooling,
# the better position for MobileNetV2 in Table 7.
_base_ = [
    './_base_/detectors/yolov3_mbv2_driving.py',
    './_base_/pooling/nlpool.py'
]

nlp = _base_.nlp
model = dict(
    backbone=dict(
        pool_position='inner',
        pooling=[
            None,
            dict(nlp, patch_size=8),
            dict(nlp, patch_size=8),
            dict(nlp, patch_size=4),
            None,
            dict(nlp, patch_size=2),
            None,
        ]))
