"""Classify texts with an exported graph: numpy featurizing and onnxruntime, no torch.

This is the path the inference pipeline takes::

    session = hub.load("distill@production")          # an onnxruntime.InferenceSession
    predict_onnx(session, ["GET /?q=' OR 1=1-- HTTP/1.1"])
    # [("sql_injection", 0.998...)]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sentenialx.hub.errors import InvalidInput, require
from sentenialx.pipeline.features import LABELS, FeatureSpec

__all__ = ["open_session", "predict_onnx", "predict_proba_onnx", "session_labels_and_spec"]

_INPUT = "features"
_OUTPUT = "probs"


def open_session(model: bytes, *, threads: int = 1) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU for serialised model bytes.

    Args:
        model: the ONNX model.
        threads: intra-op threads (1 gives the steadiest per-input latency).

    Raises:
        MissingDependency: onnxruntime is not installed (extra ``onnx``).
    """
    ort: Any = require("onnxruntime", "onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def session_labels_and_spec(session: Any) -> tuple[list[str], FeatureSpec]:
    """The label order and featurizer recorded in a session's model metadata.

    A graph without that metadata gets :data:`~.features.LABELS` and a spec
    whose width is the input's second dimension.

    Raises:
        InvalidInput: the graph does not look like a threat classifier.
    """
    meta = session.get_modelmeta().custom_metadata_map
    inputs = {i.name: i for i in session.get_inputs()}
    if _INPUT not in inputs:
        raise InvalidInput(f"ONNX model has no input named {_INPUT!r} (has {', '.join(inputs)})")
    if "sentenialx.labels" in meta and "sentenialx.featurizer" in meta:
        labels = list(json.loads(meta["sentenialx.labels"]))
        spec = FeatureSpec.from_dict(json.loads(meta["sentenialx.featurizer"]))
    else:
        width = inputs[_INPUT].shape[1]
        if not isinstance(width, int):
            raise InvalidInput(f"input {_INPUT!r} has no fixed width ({inputs[_INPUT].shape})")
        labels, spec = list(LABELS), FeatureSpec(buckets=width)
    return labels, spec


def predict_proba_onnx(
    session: Any, texts: Sequence[str], *, batch_size: int = 1024
) -> npt.NDArray[np.float32]:
    """Class probabilities ``[len(texts), classes]`` (columns in the model's label order).

    Args:
        session: an ``onnxruntime.InferenceSession`` of an exported classifier.
        texts: the inputs.
        batch_size: texts per ``session.run``.

    Raises:
        InvalidInput: the graph does not look like a threat classifier.
    """
    labels, spec = session_labels_and_spec(session)
    if not texts:
        return np.zeros((0, len(labels)), dtype=np.float32)
    parts = []
    for i in range(0, len(texts), batch_size):
        x = spec.featurize(texts[i : i + batch_size])
        parts.append(session.run([_OUTPUT], {_INPUT: x})[0])
    return np.concatenate(parts).astype(np.float32, copy=False)


def predict_onnx(session: Any, texts: Sequence[str], *, batch_size: int = 1024) -> list[tuple[str, float]]:
    """The most likely label of each text and its probability.

    Featurizes with :func:`~.features.featurize` (numpy) using the spec recorded
    in the model, then runs the graph.

    Args:
        session: an ``onnxruntime.InferenceSession`` of an exported classifier.
        texts: the inputs.
        batch_size: texts per ``session.run``.

    Returns:
        ``(label, score)`` per text, in input order.

    Raises:
        InvalidInput: the graph does not look like a threat classifier.
    """
    labels, _ = session_labels_and_spec(session)
    probs = predict_proba_onnx(session, texts, batch_size=batch_size)
    best = probs.argmax(axis=1)
    return [(labels[int(j)], float(probs[i, j])) for i, j in enumerate(best)]
