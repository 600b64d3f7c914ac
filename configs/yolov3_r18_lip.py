# YOLOv3-ResNet18 with LIP (Gao et al., ICCV 2019; 1x1 logit conv as in
# Table 1) in every down-sampling stage, s1 = 1, 608x608; outer-stage
# pooling, as in yolov3_r18_nlp.py.
_base_ = './_base_/detectors/yolov3_r18_driving.py'

model = dict(
    backbone=dict(pool_position='outer', pooling=dict(type='LIPPool')))
