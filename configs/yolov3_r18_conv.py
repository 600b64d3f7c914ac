# YOLOv3-ResNet18, stock strided convs, s1 = 1, 608x608.
_base_ = './_base_/detectors/yolov3_r18_driving.py'
