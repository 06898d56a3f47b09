"""The ONNX form of a classifier: one graph from hashed features to probabilities.

The graph takes ``features`` float32 ``[N, buckets]`` (from
:func:`~sentenialx.pipeline.features.featurize`) and returns ``probs``
float32 ``[N, classes]`` (a softmax). Its ``metadata_props`` carry what a
reader needs to use it without any other file: the label order
(``sentenialx.labels``, JSON list) and the featurizer
(``sentenialx.featurizer``, JSON of :meth:`FeatureSpec.to_dict`).

Every linear layer is a ``Gemm`` whose weight initializer keeps the torch
parameter name (``encoder.proj.weight``, ``head.fc1.weight``, ``head.out.weight``),
which is what lets :mod:`.lora` read the layers back and fold an adapter in.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sentenialx.hub.errors import InvalidInput, require
from sentenialx.pipeline.features import FeatureSpec

if TYPE_CHECKING:
    from sentenialx.orchestrator.models import Classifier

__all__ = [
    "INPUT_NAME",
    "LABELS_KEY",
    "FEATURIZER_KEY",
    "OUTPUT_NAME",
    "classifier_from_onnx",
    "export_classifier_onnx",
    "onnx_linear_layers",
    "onnx_labels_and_spec",
]

INPUT_NAME = "features"
OUTPUT_NAME = "probs"
LABELS_KEY = "sentenialx.labels"
FEATURIZER_KEY = "sentenialx.featurizer"
OPSET = 18


def export_classifier_onnx(model: Classifier, *, labels: Sequence[str], spec: FeatureSpec) -> bytes:
    """Export ``model`` (encoder and head) with a softmax as one self-contained ONNX graph.

    Args:
        model: the classifier; its encoder's input width must be ``spec.buckets``.
        labels: the label names in output order.
        spec: the featurizer the model was trained on.

    Returns:
        The serialised ``ModelProto`` (weights inside, no external data).

    Raises:
        InvalidInput: the model's sizes disagree with ``labels`` or ``spec``.
        MissingDependency: torch, onnx or onnxscript is not installed (extra ``train``).
    """
    torch: Any = require("torch", "train")
    onnx: Any = require("onnx", "train")
    require("onnxscript", "train")
    from sentenialx.orchestrator.models import Probabilities

    if model.encoder.proj.in_features != spec.buckets:
        raise InvalidInput(
            f"encoder takes {model.encoder.proj.in_features} features, spec says {spec.buckets}"
        )
    n_out = model.n_classes
    if n_out != len(labels):
        raise InvalidInput(f"head has {n_out} outputs for {len(labels)} labels")
    wrapped = Probabilities(model.encoder, model.head).eval()
    example = (torch.zeros(2, spec.buckets, dtype=torch.float32),)
    batch = torch.export.Dim("N")
    # The exporter logs a line per optional op library it cannot find (torchvision) and
    # warns about its own internals; neither says anything about this model.
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapped,
                example,
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    finally:
        onnx_logger.setLevel(level)
    proto = program.model_proto
    proto.doc_string = (
        f"Sentenial-X threat classifier: {INPUT_NAME} float32[N,{spec.buckets}] "
        f"-> {OUTPUT_NAME} float32[N,{len(labels)}]"
    )
    for key, value in (
        (LABELS_KEY, json.dumps(list(labels))),
        (FEATURIZER_KEY, json.dumps(spec.to_dict(), sort_keys=True)),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def _load_proto(model: bytes | Any) -> Any:
    onnx: Any = require("onnx", "onnx")
    if isinstance(model, bytes | bytearray | memoryview):
        return onnx.load_model_from_string(bytes(model))
    return model


def onnx_labels_and_spec(model: bytes | Any) -> tuple[list[str], FeatureSpec]:
    """The label order and featurizer recorded in an exported graph.

    Args:
        model: the serialised model or an ``onnx.ModelProto``.

    Raises:
        InvalidInput: the graph does not carry them.
        MissingDependency: onnx is not installed (extra ``onnx``).
    """
    props = {p.key: p.value for p in _load_proto(model).metadata_props}
    if LABELS_KEY not in props or FEATURIZER_KEY not in props:
        raise InvalidInput(
            f"ONNX model has no {LABELS_KEY}/{FEATURIZER_KEY} metadata; "
            "it was not exported by sentenialx.orchestrator"
        )
    return list(json.loads(props[LABELS_KEY])), FeatureSpec.from_dict(json.loads(props[FEATURIZER_KEY]))


def onnx_linear_layers(
    model: bytes | Any,
) -> dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    """Each ``Gemm`` of the graph as ``layer name -> (weight [out, in], bias [out])``.

    The layer name is the weight initializer's name without ``.weight``.

    Raises:
        InvalidInput: a Gemm does not take its weight and bias from initializers.
        MissingDependency: onnx is not installed (extra ``onnx``).
    """
    onnx: Any = require("onnx", "onnx")
    proto = _load_proto(model)
    inits = {t.name: t for t in proto.graph.initializer}
    out: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = {}
    for node in proto.graph.node:
        if node.op_type != "Gemm":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            raise InvalidInput(f"Gemm {node.name!r} does not read its weight and bias from initializers")
        w = onnx.numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        b = onnx.numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise InvalidInput(f"Gemm {node.name!r} has attributes this reader does not handle: {attrs}")
        if not attrs.get("transB", 0):
            w = w.T
        name = node.input[1].removesuffix(".weight")
        out[name] = (np.ascontiguousarray(w), b)
    return out


def classifier_from_onnx(model: bytes | Any) -> Classifier:
    """Rebuild the torch :class:`~.models.Classifier` whose export this graph is.

    Args:
        model: the serialised model or an ``onnx.ModelProto``.

    Raises:
        InvalidInput: the graph's layers are not an encoder and a head.
        MissingDependency: torch or onnx is not installed (extra ``train``).
    """
    torch: Any = require("torch", "train")
    from sentenialx.orchestrator.models import Classifier, encoder_from_state_dict, head_from_state_dict

    layers = onnx_linear_layers(model)
    enc_sd: dict[str, Any] = {}
    head_sd: dict[str, Any] = {}
    for name, (w, b) in layers.items():
        prefix, _, local = name.partition(".")
        target = {"encoder": enc_sd, "head": head_sd}.get(prefix)
        if target is None:
            raise InvalidInput(f"ONNX layer {name!r} is neither encoder.* nor head.*")
        target[f"{local}.weight"] = torch.from_numpy(w.copy())
        target[f"{local}.bias"] = torch.from_numpy(b.copy())
    return Classifier(encoder_from_state_dict(enc_sd), head_from_state_dict(head_sd)).eval()
