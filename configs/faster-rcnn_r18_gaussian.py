# Faster R-CNN-ResNet18-FPN with Gaussian-based pooling (Kobayashi, NeurIPS
# 2019) in every down-sampling stage (Table 4), s1 = 1, 1333x800. Inner-stage
# pooling, as the authors' run (`resnet18_v2-gaussian_pool-1222`: their
# second ResNet, whose first block of a pooled stage runs at stride 1 and is
# followed by the pooling), unlike this grid's other ResNet18 configs
# (outer, the better position for ResNet18 in Table 7).
_base_ = './_base_/detectors/faster-rcnn_r18_fpn_driving.py'

model = dict(
    backbone=dict(pool_position='inner', pooling=dict(type='GaussianPool')))
