# Table 7 ablation on SSDlite-MobileNetV2: the 'SelfAttn (Outer Stage)' row,
# ssd_mbv2_selfattn.py with the pooling after all blocks of each pooled
# stage.
_base_ = './ssd_mbv2_selfattn.py'

model = dict(backbone=dict(pool_position='outer'))
