"""Static int8 quantisation of an exported model with onnxruntime's
quantisation tool: QDQ format, per-channel int8 weights, activations
calibrated (min/max) on images run through the config's test pipeline."""
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
from mmcv.transforms import Compose
from mmdet.registry import MODELS
from mmdet.utils import get_test_pipeline_cfg
from mmengine.config import Config

from ..fileio import scratch_directory
from .graph import INPUT_NAME, create_session
from .requirements import import_onnxruntime

__all__ = ['IMAGE_EXTENSIONS', 'load_calibration_inputs', 'quantize_int8',
           'output_correlation']

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')


def load_calibration_inputs(cfg: Config, images_dir: str, count: int,
                            input_size: Sequence[int]) -> List[np.ndarray]:
    """The first ``count`` images of ``images_dir`` (in name order) as the
    network sees them: the config's test pipeline (without annotation
    loading) and data preprocessor.

    Args:
        cfg (Config): The model's config.
        images_dir (str): Folder of images.
        count (int): How many to use, >= 1.
        input_size (Sequence[int]): (H, W) the model was exported at; the
            pipeline must produce it.

    Returns:
        list[np.ndarray]: One float32 (1, 3, H, W) array per image.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f'the calibration image count must be an integer '
                         f'>= 1, got {count!r}')
    if not osp.isdir(images_dir):
        raise FileNotFoundError(
            f'calibration image folder {images_dir!r} not found')
    files = sorted(name for name in os.listdir(images_dir)
                   if name.lower().endswith(IMAGE_EXTENSIONS))
    if len(files) < count:
        raise ValueError(
            f'{images_dir!r} holds {len(files)} images '
            f'({", ".join(IMAGE_EXTENSIONS)}), fewer than the {count} '
            f'calibration images asked for; add images or ask for at most '
            f'{len(files)} (--calib-count)')
    pipeline_cfg = [t for t in get_test_pipeline_cfg(cfg)
                    if 'LoadAnnotations' not in str(t['type'])]
    pipeline = Compose(pipeline_cfg)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    inputs = []
    for index, name in enumerate(files[:count]):
        data = pipeline(dict(img_path=osp.join(images_dir, name),
                             img_id=index))
        batch = preprocessor(dict(inputs=[data['inputs']],
                                  data_samples=[data['data_samples']]), False)
        array = batch['inputs'].float().numpy()
        if tuple(array.shape[2:]) != tuple(input_size):
            raise ValueError(
                f'the test pipeline of {cfg.filename} turns {name} into a '
                f'{array.shape[2]}x{array.shape[3]} input, the model is '
                f'exported at {input_size[0]}x{input_size[1]}; export at '
                f'the pipeline\'s size')
        inputs.append(array)
    return inputs


def output_correlation(float_session, int8_session,
                       inputs: np.ndarray) -> Dict[str, float]:
    """Pearson correlation of each int8 output with the float32 one."""
    names = [output.name for output in float_session.get_outputs()]
    reference = float_session.run(None, {INPUT_NAME: inputs})
    quantized = int8_session.run(None, {INPUT_NAME: inputs})
    return {name: float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
            for name, a, b in zip(names, reference, quantized)}


def quantize_int8(float_bytes: bytes, calibration: List[np.ndarray]
                  ) -> Tuple[bytes, Dict[str, float]]:
    """Quantise a float32 ONNX model statically to int8.

    onnxruntime's ``quant_pre_process`` (shape inference and graph
    optimisation; without its symbolic shape inference where that gives
    up, as it does on some NLPool graphs) then ``quantize_static`` with
    ``QuantFormat.QDQ``, ``per_channel=True``, int8 weights and
    activations, min/max calibration on ``calibration``.

    Args:
        float_bytes (bytes): The float32 model.
        calibration (list[np.ndarray]): Network inputs, (1, 3, H, W) each.

    Returns:
        tuple[bytes, dict[str, float]]: The int8 model, and the
        correlation of each of its outputs with the float32 model's on the
        first calibration input.
    """
    import_onnxruntime()
    from onnxruntime.quantization import (CalibrationDataReader,
                                          CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):

        def __init__(self) -> None:
            self.pending = iter(calibration)

        def get_next(self):
            inputs = next(self.pending, None)
            return None if inputs is None else {INPUT_NAME: inputs}

    with scratch_directory('sapool_int8') as folder:
        float_path = osp.join(folder, 'float.onnx')
        prepared_path = osp.join(folder, 'prepared.onnx')
        int8_path = osp.join(folder, 'int8.onnx')
        with open(float_path, 'wb') as f:
            f.write(float_bytes)
        # onnxruntime's symbolic shape inference saves its partial model
        # (`sym_shape_infer_temp.onnx` and an external-data file) into the
        # working directory when it cannot infer every shape: run it from
        # the scratch folder so that nothing is left in the user's folder.
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            quant_pre_process(float_path, prepared_path)
        except Exception as error:  # onnxruntime raises a bare Exception
            if 'symbolic shape inference' not in str(error):
                raise
            # Its symbolic inference (made for dynamic transformer graphs)
            # gives up on some NLPool graphs; ours have a fixed input size,
            # which ONNX's own shape inference, still run, fully resolves.
            quant_pre_process(float_path, prepared_path,
                              skip_symbolic_shape=True)
        finally:
            os.chdir(cwd)
        quantize_static(
            prepared_path, int8_path, Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax)
        with open(int8_path, 'rb') as f:
            int8_bytes = f.read()
    correlation = output_correlation(create_session(float_bytes),
                                     create_session(int8_bytes),
                                     calibration[0])
    return int8_bytes, correlation
