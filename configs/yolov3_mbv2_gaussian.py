# YOLOv3-MobileNetV2 with Gaussian-based pooling (Kobayashi, NeurIPS 2019)
# in every down-sampling stage, s1 = 1, 608x608; inner-stage pooling, as in
# yolov3_mbv2_nlp.py.
_base_ = './_base_/detectors/yolov3_mbv2_driving.py'

model = dict(
    backbone=dict(pool_position='inner', pooling=dict(type='GaussianPool')))
