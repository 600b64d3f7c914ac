# Faster R-CNN-ResNet18-FPN with Gaussian-based pooling (Kobayashi, NeurIPS
# 2019) in every down-sampling stage (Table 4), s1 = 1, 1333x800;
# outer-stage pooling, as in faster-rcnn_r18_nlp.py.
_base_ = './_base_/detectors/faster-rcnn_r18_fpn_driving.py'

model = dict(
    backbone=dict(pool_position='outer', pooling=dict(type='GaussianPool')))
