# SSDlite-ResNet18 with LIP (Gao et al., ICCV 2019; 1x1 logit conv as in
# Table 1) in every down-sampling stage (Table 4), s1 = 1, 320x320;
# outer-stage pooling, as in ssd_r18_nlp.py.
_base_ = './_base_/detectors/ssdlite_r18_driving.py'

model = dict(
    backbone=dict(pool_position='outer', pooling=dict(type='LIPPool')))
