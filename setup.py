from setuptools import find_packages, setup

setup(
    name='sapool_mmdet',
    version='0.1.0',
    description='Self-attentive (non-local) pooling for mmdetection 3.x',
    packages=find_packages(include=['sapool_mmdet', 'sapool_mmdet.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch==2.13.0',
        'mmengine==0.10.7',
        'mmcv==2.1.0',
        'mmdet==3.3.0',
        'pycocotools>=2.0.7,<2.1',
        'matplotlib>=3.7,<3.11',
        'numpy>=1.24,<2',
    ],
)
