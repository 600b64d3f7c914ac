# SSDlite-ResNet18 with self-attentive pooling in every down-sampling stage
# (Table 4), s1 = 1, 320x320. Paper settings (Table 1): 2 heads,
# embed_ratio 1 (as the official ResNet code), patch sizes larger for the
# early, large maps: layer2-4 pool maps of 80, 40 and 20 pixels with
# patches 4, 2 and 1 (20x20 tokens each). Outer-stage pooling, the better
# position for ResNet18 in Table 7 and the official code's.
_base_ = './_base_/detectors/ssdlite_r18_driving.py'

nlp = dict(type='NLPool', embed_ratio=1.0, num_heads=2)
model = dict(
    backbone=dict(
        pool_position='outer',
        pooling=[
            None,
            dict(nlp, patch_size=4),
            dict(nlp, patch_size=2),
            dict(nlp, patch_size=1),
        ]))
