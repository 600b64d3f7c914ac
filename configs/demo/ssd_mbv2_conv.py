# The strided-conv baseline of the demo: configs/demo/ssd_mbv2_nlp.py (same
# data, light recipe and schedule) with the stock strided depthwise convs
# of MobileNetV2 instead of NLPool, i.e. configs/ssd_mbv2_conv.py trained
# the demo's way. The deployment benchmark compares the two.
_base_ = './ssd_mbv2_nlp.py'

model = dict(backbone=dict(pooling=None))
