# Table 7 ablation on SSDlite-MobileNetV2 (the paper's Table 7 ablates on
# STL-10 classification): the 'w/o(bn1)' row: no norm
# after the patch-embedding conv (the authors' nlp_nobn1.py; the conv gets
# a bias).
# Everything else as ../official/ssd_mbv2_nlp.py, the authors' SSD NLPool
# run (2 heads, patch sizes 4, 4, 2, 1, no eq. 5 denominator, their
# positional encoding and width rule, inner-stage pooling, their schedule).
_base_ = '../official/ssd_mbv2_nlp.py'

nlp = dict(type='NLPool', embed_ratio=1.0, num_heads=2, window_norm=False,
           upsample='nearest', pos_embed='rowcol', embed_width='per_head',
           use_embed_norm=False)
patch_sizes = (None, 4, 4, 2, None, 1, None)
model = dict(
    backbone=dict(
        pool_position='inner',
        pooling=[p and dict(nlp, patch_size=p) for p in patch_sizes]))
