# SSDlite-MobileNetV2 with LIP (Gao et al., ICCV 2019; 1x1 logit conv as in
# Table 1) in every down-sampling stage (the 'LIP' row of Table 4), s1 = 1,
# 320x320; inner-stage pooling, as in ssd_mbv2_nlp.py.
_base_ = './_base_/detectors/ssdlite_mbv2_driving.py'

model = dict(
    backbone=dict(pool_position='inner', pooling=dict(type='LIPPool')))
