# SSDlite-MobileNetV2, stock strided depthwise convs (the 'Strided Conv.'
# row of Table 4), eight driving classes, 320x320.
_base_ = './_base_/detectors/ssdlite_mbv2_driving.py'
