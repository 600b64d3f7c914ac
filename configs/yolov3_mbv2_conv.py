# YOLOv3-MobileNetV2, stock strided depthwise convs, s1 = 1, 608x608.
_base_ = './_base_/detectors/yolov3_mbv2_driving.py'
