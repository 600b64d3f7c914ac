# The authors' SSDlite-MobileNetV2 NLPool run,
# `mobilenet_v2-nlp_headfix2_nowin_reduced-1222121` (their
# mmdet_repo/configs/network/ssd/mobilenet/nlp-1222121.py), with the SSD
# schedule of ssd_mbv2_conv.py. What the string sets (their
# base/models/network.py, name_parse):
# - `mobilenet_v2`: the pooling follows the first block of each pooled
#   stage, whose depthwise conv runs at stride 1: pool_position='inner';
# - `-1222121`: the stock strides; stages 2, 3, 4 and 6 pool;
# - `nlp`: NLPool with embed_ratio 1, their embedding width rule
#   (round(eps_r * C / m) * m), their learned row/column positional
#   encoding and nearest upsampling;
# - `_headfix2`: 2 heads in every stage;
# - `_nowin`: no denominator in eq. 5 (window_norm=False);
# - `_reduced`: patch sizes 4, 4, 2 and 1 on stages 2, 3, 4 and 6 (the
#   160, 80, 40 and 20 px maps at 320x320: 40x40, 20x20, 20x20 and 20x20
#   tokens).
_base_ = ['./ssd_mbv2_conv.py', '../_base_/pooling/nlpool_authors.py']

# `_headfix2`, `_nowin`
nlp = dict(_base_.nlp_authors, num_heads=2, window_norm=False)
patch_sizes = (None, 4, 4, 2, None, 1, None)
model = dict(
    backbone=dict(
        pool_position='inner',
        pooling=[p and dict(nlp, patch_size=p) for p in patch_sizes]))
