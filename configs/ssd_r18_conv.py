# SSDlite-ResNet18, stock strided convs (the 'Strided Conv.' baseline of
# Table 4), s1 = 1, 320x320.
_base_ = './_base_/detectors/ssdlite_r18_driving.py'
