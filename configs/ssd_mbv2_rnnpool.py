# SSDlite-MobileNetV2 with RNNPool (Saha et al., NeurIPS 2020) in every
# down-sampling stage, s1 = 1, 320x320; inner-stage pooling, as in
# ssd_mbv2_nlp.py.
_base_ = './_base_/detectors/ssdlite_mbv2_driving.py'

model = dict(
    backbone=dict(pool_position='inner', pooling=dict(type='RNNPool')))
