# Faster R-CNN-ResNet50-FPN, stock strided convs, s1 = 1, 1333x800.
_base_ = './_base_/detectors/faster-rcnn_r50_fpn_driving.py'
