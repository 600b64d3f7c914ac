# SSDlite-MobileNetV2 with self-attentive pooling (NLPool) in every
# down-sampling stage (the 'Ours' row of Table 4), s1 = 1, 320x320.
# Paper settings (Table 1): 2 heads, embed_ratio 1, patch sizes larger for
# the early, large maps: 8, 4, 2, 1 on the 160, 80, 40 and 20 px maps, so
# every pooling attends over a 20x20 token grid; inner-stage pooling, the
# better position for MobileNetV2 in Table 7.
_base_ = './_base_/detectors/ssdlite_mbv2_driving.py'

nlp = dict(type='NLPool', embed_ratio=1.0, num_heads=2)
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
