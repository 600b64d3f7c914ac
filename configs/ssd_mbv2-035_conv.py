# SSDlite-MobileNetV2-0.35x, stock strided depthwise convs, s1 = 1,
# 320x320.
_base_ = './_base_/detectors/ssdlite_mbv2-035_driving.py'
