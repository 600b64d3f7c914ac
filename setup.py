"""sapool_mmdet: self-attentive (non-local) pooling for mmdetection 3.x.

``install_requires`` takes the ranges the package works with, so that
``pip install -e .`` into an existing mmdet environment (a CUDA torch, its
own mmcv build) changes nothing there; docs/installation.md, "Version
ranges", says why each bound exists. The exact versions we test are in
``constraints.txt``, which ``make install`` passes to pip.

mmcv comes in two distributions that install the same ``mmcv`` module:
``mmcv`` with compiled ops, which has to be built from source for a recent
torch, and ``mmcv-lite`` without them, a pure-Python wheel. Either works
(``import sapool_mmdet`` runs the ops our detectors need on torchvision or
plain PyTorch where mmcv has none), and pip cannot require "one of two",
so mmcv is an extra: ``pip install -e ".[lite]"`` or ``".[full]"``, or
nothing where an mmcv is already installed. Without any mmcv,
``import sapool_mmdet`` says how to get one.
"""
from setuptools import find_packages, setup

# what mmdet 3.x accepts (mmdet 3.3 refuses 2.2)
MMCV_RANGE = '>=2.0.0rc4,<2.2.0'

INSTALL_REQUIRES = [
    'torch>=2.0',
    'mmengine>=0.7.1,<1.0.0',
    'mmdet>=3.0.0,<4.0.0',
    'numpy>=1.21',
    'pycocotools>=2.0.2',
    'matplotlib>=3.5',
    'terminaltables>=3.1',
    'Pillow>=8.0',
    # mmengine < 1.0 imports pkg_resources (removed in setuptools 81) to
    # resolve `mmdet::` base configs, which every config here inherits
    'setuptools<81',
]

setup(
    name='sapool_mmdet',
    version='0.1.0',
    description='Self-attentive (non-local) pooling for mmdetection 3.x',
    license='Apache-2.0',
    packages=find_packages(include=['sapool_mmdet', 'sapool_mmdet.*']),
    python_requires='>=3.8',
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # mmcv without compiled ops: nothing to compile
        'lite': ['mmcv-lite' + MMCV_RANGE],
        # mmcv with compiled ops: built from source where no wheel matches
        'full': ['mmcv' + MMCV_RANGE],
        # tools/export_onnx.py, tools/test_onnx.py, tools/benchmark_deploy.py
        'deploy': ['onnx>=1.17', 'onnxruntime>=1.19'],
        'tests': ['pytest>=7'],
    },
)
