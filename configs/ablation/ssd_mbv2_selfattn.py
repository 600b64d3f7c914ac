# Table 7 ablation on SSDlite-MobileNetV2 (the paper's Table 7 ablates on
# STL-10 classification): the 'SelfAttn (Inner Stage)' row. Self-attention
# over every pixel, then a conv with kernel = stride (SelfAttnPool, the
# authors' attn_pool.py as their network builds it: embed_ratio 1, 2 heads,
# their positional encoding), in stages 2, 3, 4 and 6 after each stage's
# first block; no restoration and no weighted pooling. Schedule as
# ../official/ssd_mbv2_nlp.py. Attention runs over all 160x160 pixels of
# stage 2 at 320x320: use a GPU.
_base_ = '../official/ssd_mbv2_nlp.py'

model = dict(
    backbone=dict(pool_position='inner',
                  pooling=dict(_delete_=True, type='SelfAttnPool',
                               num_heads=2)))
