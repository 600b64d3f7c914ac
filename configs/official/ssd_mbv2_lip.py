# The authors' SSDlite-MobileNetV2 LIP run, `mobilenet_v2-lip-1222121`
# (their mmdet_repo/configs/network/ssd/mobilenet/lip-1222121.py), with the
# SSD schedule of ssd_mbv2_conv.py: LIP (1x1 logit conv, BN, sigmoid) in
# stages 2, 3, 4 and 6, after each stage's first block (`mobilenet_v2`:
# pool_position='inner').
_base_ = './ssd_mbv2_conv.py'

model = dict(
    backbone=dict(pool_position='inner', pooling=dict(type='LIPPool')))
