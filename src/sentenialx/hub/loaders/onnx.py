"""Load ONNX models from verified bytes into an onnxruntime session.

ONNX is data, not code, with one catch: a tensor may live in an external file
named by a path inside the model. Loaders never read a path (see DESIGN.md,
"Loaders never read a path themselves"), and a path inside an artifact could
point anywhere (``../../etc/passwd`` read into a weight), so a model with
external data is refused before onnxruntime sees it, whatever that version of
onnxruntime would do with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sentenialx.hub.errors import InvalidInput, UnsafeArtifact, require

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["load_onnx"]


def load_onnx(data: bytes | memoryview, *, name: str) -> onnxruntime.InferenceSession:
    """Create a CPU inference session from an ONNX model's bytes.

    Args:
        data: the serialised ``ModelProto``, as verified by the hub.
        name: the artifact's name, used in errors.

    Returns:
        An ``onnxruntime.InferenceSession`` on ``CPUExecutionProvider``.

    Raises:
        UnsafeArtifact: the model keeps tensors in external files.
        InvalidInput: the bytes are not a model onnxruntime can load.
        MissingDependency: onnx or onnxruntime is not installed (extra ``onnx``).
    """
    onnx: Any = require("onnx", "onnx")
    ort: Any = require("onnxruntime", "onnx")
    raw = bytes(data)
    try:
        model = onnx.load_model_from_string(raw)
    except Exception as exc:
        raise InvalidInput(f"{name}: not an ONNX model ({type(exc).__name__}: {exc})") from exc
    external = onnx.TensorProto.EXTERNAL
    for tensor in _all_tensors(model):
        if tensor.data_location == external:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            raise UnsafeArtifact(
                f"{name}: tensor {tensor.name!r} is stored in external file {location!r}; "
                "loaders only read the verified bytes (re-export with the weights inside)",
                path=name,
                offending=location,
            )
    del model
    try:
        return ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InvalidInput(
            f"{name}: onnxruntime cannot load it ({type(exc).__name__}: {exc})"
        ) from exc


def _all_tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto in a model: initializers, attributes, subgraphs, functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Iterable[Any]) -> Iterator[Any]:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            sparse_tensors = list(attr.sparse_tensors)
            if attr.HasField("sparse_tensor"):
                sparse_tensors.append(attr.sparse_tensor)
            for sparse in sparse_tensors:
                yield sparse.values
                yield sparse.indices
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for graph in attr.graphs:
                yield from _graph_tensors(graph)
