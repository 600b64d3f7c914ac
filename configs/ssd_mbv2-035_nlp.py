# SSDlite-MobileNetV2-0.35x with self-attentive pooling in every
# down-sampling stage, s1 = 1, 320x320: the settings of ssd_mbv2_nlp.py
# (2 heads, embed_ratio 1, patch sizes 8, 4, 2, 1, inner-stage pooling).
_base_ = [
    './_base_/detectors/ssdlite_mbv2-035_driving.py',
    './_base_/pooling/nlpool.py'
]

nlp = _base_.nlp
model = dict(
    backbone=dict(
        pool_position='inner',
        pooling=[
            None,
            dict(nlp, patch_size=8),
            dict(nlp, patch_size=4),
            dict(nlp, patch_size=2),
            None,
            dict(nlp, patch_size=1),
            None,
        ]))
