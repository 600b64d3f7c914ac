# Faster R-CNN-ResNet18-FPN, stock strided convs (the 'Strided Conv.'
# baseline of Table 4), s1 = 1, 1333x800.
_base_ = './_base_/detectors/faster-rcnn_r18_fpn_driving.py'
