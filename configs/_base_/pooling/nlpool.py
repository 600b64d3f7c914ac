# The paper's NLPool settings (Chen et al., WACV 2023, Table 1): m = 2
# attention heads and embedding ratio eps_r = 1 (the paper's other ratio,
# 0.25, is faster-rcnn_r50_nlp.py's). Every NLPool config of the grid
# inherits this file and builds its per-stage pooling list from `nlp`,
# adding only the patch size eps_p of each stage, which the paper gives
# only as the set {1, 2, 4, 8} and is therefore each config's own choice:
#
#     _base_ = ['./_base_/detectors/....py', './_base_/pooling/nlpool.py']
#     nlp = _base_.nlp
#     model = dict(backbone=dict(pooling=[None, dict(nlp, patch_size=8), ...]))
#
# The authors' runs (configs/official/) use their code's settings instead.
nlp = dict(type='NLPool', embed_ratio=1.0, num_heads=2)
