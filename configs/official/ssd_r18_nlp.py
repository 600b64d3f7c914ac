# The authors' SSDlite-ResNet18 NLPool run,
# `resnet18-nlp_headfix2_nowin_reduced-1222` (their
# mmdet_repo/configs/network/ssd/resnet18/ssd_resnet18-nlp-1222.py), with
# the schedule of ssd_r18_conv.py. What the string sets (their
# base/models/network.py, name_parse):
# - `resnet18`: their ResNet adds the pooling after all blocks of a stage,
#   which run at stride 1: pool_position='outer';
# - `-1222`: the stock strides; layer2, layer3 and layer4 pool;
# - `nlp`: NLPool with embed_ratio 1, their embedding width rule, their
#   learned row/column positional encoding, nearest upsampling;
# - `_headfix2`: 2 heads (the heads 8, 16, 32 of plain `nlp` are replaced);
# - `_nowin`: window_norm=False;
# - `_reduced` (the active block of the 4-stage branch; the commented-out
#   block with patches 16, 8, 4, 2 and ratio 1/4 is not used): patch sizes
#   2, 1 and 1 on layer2, layer3 and layer4 (layer1, stride 1, does not
#   pool): at 320x320 they pool the 80, 40 and 20 px maps (40x40, 40x40 and
#   20x20 tokens).
_base_ = ['./ssd_r18_conv.py', '../_base_/pooling/nlpool_authors.py']

# `_headfix2`, `_nowin`
nlp = dict(_base_.nlp_authors, num_heads=2, window_norm=False)
patch_sizes = (None, 2, 1, 1)
model = dict(
    backbone=dict(
        pool_position='outer',
        pooling=[p and dict(nlp, patch_size=p) for p in patch_sizes]))
