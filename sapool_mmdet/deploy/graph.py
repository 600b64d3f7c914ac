"""What export, int8 quantisation and the onnxruntime runner agree on about
an exported graph: the input's name, how the model's outputs (tensors and
lists of tensors, one list per feature level) are flattened into graph
outputs and grouped back, the metadata we store in the file, and how an
onnxruntime session is opened.

:mod:`.export`, :mod:`.quantize` and :mod:`.runtime` import this module
and not each other, except that export calls quantisation.
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

from .requirements import import_onnxruntime

__all__ = [
    'INPUT_NAME', 'METADATA_PREFIX', 'output_groups', 'output_names',
    'group_outputs', 'flatten_outputs', 'set_metadata', 'read_metadata',
    'create_session', 'session_metadata'
]

INPUT_NAME = 'input'
METADATA_PREFIX = 'sapool_mmdet.'


def output_groups(raw: Sequence, names: Sequence[str]) -> List[list]:
    """Describe a model's outputs: one ``[name, count]`` per returned item,
    count -1 for a tensor and the list length for a list of tensors."""
    groups = []
    for index, item in enumerate(raw):
        name = names[index] if index < len(names) else f'output{index}'
        groups.append([name, len(item) if isinstance(item, (list, tuple))
                       else -1])
    return groups


def output_names(groups: Sequence[Sequence]) -> List[str]:
    """Graph output names of :func:`output_groups`: ``name`` or
    ``name_<level>``."""
    names = []
    for name, count in groups:
        names += [name] if count < 0 else [f'{name}_{k}' for k in
                                           range(count)]
    return names


def group_outputs(flat: Sequence, groups: Sequence[Sequence]) -> tuple:
    """Undo the flattening: ``flat`` outputs back into the model's
    structure (a tuple of tensors and lists of tensors)."""
    grouped, start = [], 0
    for _, count in groups:
        if count < 0:
            grouped.append(flat[start])
            start += 1
        else:
            grouped.append(list(flat[start:start + count]))
            start += count
    if start != len(flat):
        raise ValueError(f'the model has {len(flat)} outputs, its metadata '
                         f'describes {start}')
    return tuple(grouped)


def flatten_outputs(raw: Sequence) -> tuple:
    """A model's outputs (tensors and lists of tensors) as one flat tuple,
    the order of the graph outputs :func:`output_names` names."""
    flat = []
    for item in raw:
        flat += list(item) if isinstance(item, (list, tuple)) else [item]
    return tuple(flat)


def set_metadata(proto, metadata: Dict[str, object]) -> None:
    """Store ``metadata`` (JSON values) in an ONNX ``ModelProto``'s
    ``metadata_props`` under our prefix, replacing our earlier entries."""
    kept = [entry for entry in proto.metadata_props
            if not entry.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = METADATA_PREFIX + key
        entry.value = json.dumps(value)


def read_metadata(custom_metadata: Dict[str, str]) -> Dict[str, object]:
    """Our metadata from an ONNX file's ``metadata_props`` (as onnxruntime's
    ``get_modelmeta().custom_metadata_map`` returns them)."""
    return {key[len(METADATA_PREFIX):]: json.loads(value)
            for key, value in custom_metadata.items()
            if key.startswith(METADATA_PREFIX)}


def create_session(model: Union[str, bytes],
                   num_threads: Optional[int] = None,
                   log_severity: int = 3):
    """An onnxruntime CPU session for an ONNX file or serialised model.

    Args:
        model (str | bytes): Path of an ONNX file, or its bytes.
        num_threads (int, optional): Intra-op threads; None lets
            onnxruntime choose (one per core).
        log_severity (int): onnxruntime's log level: 3 logs errors, 4
            only fatal ones. Default: 3.

    Returns:
        onnxruntime.InferenceSession
    """
    ort = import_onnxruntime()
    if isinstance(model, str) and not osp.isfile(model):
        raise FileNotFoundError(f'ONNX file {model!r} not found')
    options = ort.SessionOptions()
    options.log_severity_level = log_severity
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=options,
                                providers=['CPUExecutionProvider'])


def session_metadata(session) -> dict:
    """What :func:`~sapool_mmdet.deploy.export_module` stored in the file
    (scope, input_size, output_groups, ...)."""
    return read_metadata(session.get_modelmeta().custom_metadata_map)
