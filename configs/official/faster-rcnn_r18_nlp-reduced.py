# The authors' Faster R-CNN-ResNet18-FPN `resnet18-nlp_reduced-1222` run
# (their mmdet_repo/configs/network/faster_rcnn/resnet18/
# resnet18_nlp_reduced.py), with the schedule of faster-rcnn_r18_conv.py.
# What the string sets (their base/models/network.py, name_parse, 4-stage
# branch):
# - `resnet18`: pool_position='outer';
# - `nlp`: embed_ratio 1, their embedding width rule, their learned
#   row/column positional encoding, nearest upsampling, eq. 5 with its
#   denominator, 8, 16 and 32 heads on layer2, layer3 and layer4;
# - `_reduced` (the active block; the commented-out block with patches 16,
#   8, 4, 2 and ratio 1/4 is not used): patch sizes 2, 1 and 1 on layer2,
#   layer3 and layer4 (layer1 would have 4): at 1333x800 (padded to
#   1344x800) they pool maps of 336x200, 168x100 and 84x50 pixels, with
#   168x100, 168x100 and 84x50 tokens.
_base_ = [
    './faster-rcnn_r18_conv.py', '../_base_/pooling/nlpool_authors.py'
]

nlp = _base_.nlp_authors
model = dict(
    backbone=dict(
        pool_position='outer',
        pooling=[
            None,
            dict(nlp, patch_size=2, num_heads=8),
            dict(nlp, patch_size=1, num_heads=16),
            dict(nlp, patch_size=1, num_heads=32),
        ]))
