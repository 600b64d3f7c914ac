"""Run exported detectors with onnxruntime inside mmdet's test loop
(``tools/test_onnx.py``).

:class:`ONNXRuntimeDetector` is an mmdet detector whose tensor-mode forward
is an onnxruntime session. It keeps the config's data preprocessor and the
config's head, whose ``predict_by_feat`` decodes the raw outputs and runs
NMS exactly as in PyTorch, so mmengine's ``Runner`` runs the config's test
dataloader and evaluator on it unchanged, and the evaluator writes the same
report (``driving_metrics.{json,md}``) as for the PyTorch model.
"""
import os.path as osp
from typing import List, Optional, Union

import numpy as np
import torch
from mmdet.models.detectors import BaseDetector, SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmengine.config import Config, ConfigDict

from ..analysis.config import load_config
from .graph import (INPUT_NAME, create_session, group_outputs,
                    session_metadata)

__all__ = ['create_session', 'session_metadata', 'ONNXRuntimeDetector',
           'onnx_test_config', 'evaluate_onnx']


@MODELS.register_module()
class ONNXRuntimeDetector(BaseDetector):
    """A single-stage detector whose backbone, neck and head run in
    onnxruntime.

    ``predict`` feeds the preprocessed batch to the ONNX model (exported
    with ``--scope detector``), regroups its outputs into what the head's
    ``forward`` returns, and calls the head's ``predict_by_feat``, as
    ``SingleStageDetector.predict`` does.

    Args:
        onnx_file (str): The exported detector.
        detector (dict): The config's ``model``: its data preprocessor,
            head and ``test_cfg`` are used; its weights are not.
        num_threads (int, optional): onnxruntime intra-op threads. Default:
            None (onnxruntime's choice).
        data_preprocessor (dict, optional): Used when ``detector`` has
            none (mmengine's Runner passes the config's top-level one).
        init_cfg (dict, optional): Unused; mmengine's argument.
    """

    def __init__(self,
                 onnx_file: str,
                 detector: Union[dict, ConfigDict],
                 num_threads: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=detector.get('data_preprocessor',
                                           data_preprocessor),
            init_cfg=init_cfg)
        self.onnx_file = onnx_file
        self.session = create_session(onnx_file, num_threads)
        self.metadata = session_metadata(self.session)
        if self.metadata.get('scope') != 'detector':
            raise ValueError(
                f'{onnx_file!r} is not a detector export (its scope is '
                f'{self.metadata.get("scope")!r}); export the detector with '
                f'tools/export_onnx.py --scope detector')
        torch_detector = MODELS.build(detector)
        if not isinstance(torch_detector, SingleStageDetector):
            raise ValueError(
                f'ONNX evaluation runs single-stage detectors (a dense head '
                f'whose predict_by_feat decodes the raw outputs); the '
                f'config builds {type(torch_detector).__name__}')
        self.bbox_head = torch_detector.bbox_head
        shape = self.session.get_inputs()[0].shape
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.fixed_size = (tuple(shape[2:]) if all(
            isinstance(v, int) for v in shape[2:]) else None)

    def _run(self, batch_inputs: torch.Tensor) -> List[np.ndarray]:
        size = tuple(batch_inputs.shape[2:])
        if self.fixed_size is not None and size != self.fixed_size:
            raise ValueError(
                f'{self.onnx_file!r} takes {self.fixed_size[0]}x'
                f'{self.fixed_size[1]} inputs, the test pipeline makes '
                f'{size[0]}x{size[1]}; export at this size (--input-size '
                f'{size[0]} {size[1]}) or with --dynamic')
        inputs = batch_inputs.detach().cpu().float().numpy()
        if self.fixed_batch is None or self.fixed_batch == len(inputs):
            return self.session.run(None, {INPUT_NAME: inputs})
        if self.fixed_batch != 1:
            raise ValueError(
                f'{self.onnx_file!r} takes batches of {self.fixed_batch}, '
                f'got {len(inputs)}; export with --dynamic')
        runs = [self.session.run(None, {INPUT_NAME: inputs[i:i + 1]})
                for i in range(len(inputs))]
        return [np.concatenate(parts) for parts in zip(*runs)]

    def _forward(self, batch_inputs: torch.Tensor,
                 batch_data_samples: Optional[SampleList] = None) -> tuple:
        """The head's raw outputs, as the PyTorch detector's tensor mode
        returns them."""
        flat = [torch.from_numpy(array) for array in self._run(batch_inputs)]
        return group_outputs(flat, self.metadata['output_groups'])

    def predict(self,
                batch_inputs: torch.Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detections of the ONNX model, decoded by the config's head."""
        outs = self._forward(batch_inputs)
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        results_list = self.bbox_head.predict_by_feat(
            *outs, batch_img_metas=batch_img_metas, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results_list)

    def extract_feat(self, batch_inputs: torch.Tensor):
        raise NotImplementedError(
            'the ONNX model returns head outputs, not features')

    def loss(self, batch_inputs: torch.Tensor,
             batch_data_samples: SampleList):
        raise NotImplementedError('an ONNX model cannot be trained')


def onnx_test_config(config: str,
                     onnx_file: str,
                     work_dir: Optional[str] = None,
                     cfg_options: Optional[dict] = None,
                     num_threads: Optional[int] = None) -> Config:
    """The config with its model replaced by :class:`ONNXRuntimeDetector`
    and the work dir set as mmdet's ``tools/test.py`` sets it."""
    if not osp.isfile(onnx_file):
        raise FileNotFoundError(f'ONNX file {onnx_file!r} not found')
    cfg = load_config(config, cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    cfg.load_from = None
    cfg.resume = False
    cfg.model = dict(type='ONNXRuntimeDetector', onnx_file=onnx_file,
                     detector=cfg.model, num_threads=num_threads)
    return cfg


def evaluate_onnx(config: str,
              onnx_file: str,
              work_dir: Optional[str] = None,
              cfg_options: Optional[dict] = None,
              num_threads: Optional[int] = None) -> dict:
    """Evaluate an exported detector on the config's test set.

    mmengine's ``Runner`` runs the config's test dataloader, the model's
    data preprocessor, onnxruntime, the head's ``predict_by_feat`` and the
    config's evaluator; a :class:`~sapool_mmdet.evaluation.DrivingCocoMetric`
    writes ``<work_dir>/driving_metrics.{json,md}``.

    Args:
        config (str): The config the model was exported from.
        onnx_file (str): A ``--scope detector`` export (float32 or int8).
        work_dir (str, optional): Logs and reports. Default: the config's
            ``work_dir``, else ``./work_dirs/<config name>``.
        cfg_options (dict, optional): Config overrides, as mmdet's
            ``--cfg-options``.
        num_threads (int, optional): onnxruntime intra-op threads.

    Returns:
        dict: The evaluator's metrics (``coco/bbox_mAP``, ...).
    """
    from mmengine.runner import Runner
    cfg = onnx_test_config(config, onnx_file, work_dir, cfg_options,
                           num_threads)
    return Runner.from_cfg(cfg).test()
