# SSDlite-MobileNetV2 with Gaussian-based pooling (Kobayashi, NeurIPS 2019)
# in every down-sampling stage (the 'GaussianPool' row of Table 4), s1 = 1,
# 320x320; inner-stage pooling, as in ssd_mbv2_nlp.py.
_base_ = './_base_/detectors/ssdlite_mbv2_driving.py'

model = dict(
    backbone=dict(pool_position='inner', pooling=dict(type='GaussianPool')))
