# Faster R-CNN-ResNet50-FPN with self-attentive pooling in every
# down-sampling stage, s1 = 1, 1333x800: the patch sizes of
# faster-rcnn_r18_nlp.py (8, 4, 2; 42x25 tokens each) and embed_ratio 0.25,
# the paper's other setting, so the tokens of ResNet50's 4x wider stage
# outputs (512, 1024, 2048 channels) are as wide as ResNet18's. Outer-stage
# pooling.
_base_ = [
    './_base_/detectors/faster-rcnn_r50_fpn_driving.py',
    './_base_/pooling/nlpool.py'
]

nlp = dict(_base_.nlp, embed_ratio=0.25)
model = dict(
    backbone=dict(
        pool_position='outer',
        pooling=[
            None,
            dict(nlp, patch_size=8),
            dict(nlp, patch_size=4),
            dict(nlp, patch_size=2),
        ]))
