"""The torch models: the encoder projection, MLP heads, their composition and LoRA.

Importing this module imports torch; the rest of the orchestrator imports it only
inside the functions that train or export.

Saved forms are plain state dicts (tensors only), and every architecture is
rebuilt from the shapes in its state dict, so a checkpoint loads with
``torch.load(weights_only=True)`` and needs no pickled class:

- the encoder: ``proj.weight`` ``[dim, buckets]``, ``proj.bias`` ``[dim]``;
- a head (teacher or student): ``fc1.*``, ``fc2.*``, ... then ``out.*``;
- a classifier (encoder + head, as exported to ONNX): the same keys under
  ``encoder.`` and ``head.``.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from sentenialx.hub.errors import InvalidInput

__all__ = [
    "Classifier",
    "Encoder",
    "LoRALinear",
    "Probabilities",
    "apply_lora",
    "count_params",
    "lora_state_dict",
    "make_head",
    "head_from_state_dict",
    "head_layer",
    "encoder_from_state_dict",
]


class Encoder(nn.Module):
    """The learned half of the text encoder: hashed n-gram features to an embedding."""

    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(buckets, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(x))


def make_head(dim: int, hidden: Sequence[int], n_classes: int, *, dropout: float = 0.0) -> nn.Sequential:
    """An MLP head: ``fc1`` .. ``fcK`` (ReLU, optional dropout) then ``out`` (logits).

    Args:
        dim: input width (the encoder's embedding size).
        hidden: widths of the hidden layers; empty for a linear head.
        n_classes: output width.
        dropout: dropout after each hidden layer, while training.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = dim
    for i, h in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, h)
        layers[f"act{i}"] = nn.ReLU()
        if dropout > 0:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        width = h
    layers["out"] = nn.Linear(width, n_classes)
    return nn.Sequential(layers)


def head_layer(head: nn.Sequential, name: str) -> nn.Linear:
    """The linear layer ``name`` (``fc1``.. or ``out``) of a head made by :func:`make_head`.

    Raises:
        InvalidInput: the head has no such linear layer.
    """
    layer = getattr(head, name, None)
    if not isinstance(layer, nn.Linear):
        raise InvalidInput(f"head has no linear layer {name!r}")
    return layer


class Classifier(nn.Module):
    """Encoder then head: features ``[N, buckets]`` to logits ``[N, classes]``."""

    def __init__(self, encoder: Encoder, head: nn.Sequential) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    @property
    def n_classes(self) -> int:
        """Output width."""
        return head_layer(self.head, "out").out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class Probabilities(Classifier):
    """A classifier with a softmax on top: the form exported to ONNX.

    It shares the classifier's attribute names, so parameters keep their names
    (``encoder.proj.weight``...) in the exported graph.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.encoder(x)), dim=-1)


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def _linear_shapes(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, int]:
    w, b = sd.get(f"{key}.weight"), sd.get(f"{key}.bias")
    if w is None or b is None or w.dim() != 2 or b.shape != (w.shape[0],):
        raise InvalidInput(f"state dict has no linear layer {key!r} (weight [out, in] and bias [out])")
    return int(w.shape[1]), int(w.shape[0])


def encoder_from_state_dict(sd: Mapping[str, torch.Tensor]) -> Encoder:
    """Rebuild an :class:`Encoder` from its state dict (shapes give the sizes).

    Raises:
        InvalidInput: the dict is not an encoder's.
    """
    buckets, dim = _linear_shapes(sd, "proj")
    enc = Encoder(buckets, dim)
    enc.load_state_dict(dict(sd))
    return enc


def head_from_state_dict(sd: Mapping[str, torch.Tensor]) -> nn.Sequential:
    """Rebuild a head made by :func:`make_head` from its state dict.

    Raises:
        InvalidInput: the dict is not a head's.
    """
    idx = sorted({int(m[1]) for k in sd if (m := re.fullmatch(r"fc(\d+)\.weight", k))})
    if idx != list(range(1, len(idx) + 1)):
        raise InvalidInput(f"head layers are not fc1..fcK: {sorted(sd)}")
    dims = [_linear_shapes(sd, f"fc{i}") for i in idx]
    dim = dims[0][0] if dims else _linear_shapes(sd, "out")[0]
    _, n_classes = _linear_shapes(sd, "out")
    head = make_head(dim, [d[1] for d in dims], n_classes)
    head.load_state_dict(dict(sd))
    return head


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / r) * B @ A``.

    ``A`` is ``[r, in]`` (random), ``B`` is ``[out, r]`` (zeros), so training
    starts from the base model's outputs exactly. Merged weight:
    ``W + (alpha / r) * B @ A``.
    """

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        with torch.no_grad():
            bound = 1.0 / math.sqrt(base.in_features)
            self.lora_A.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merged_weight(self) -> torch.Tensor:
        """The base weight with the update folded in."""
        return self.base.weight + self.scaling * (self.lora_B @ self.lora_A)


def _linear(model: nn.Module, name: str) -> tuple[nn.Module, str, nn.Linear]:
    parent_name, _, attr = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = getattr(parent, attr)
    except AttributeError:
        raise InvalidInput(f"LoRA target {name!r} is not a module of the model") from None
    if not isinstance(layer, nn.Linear):
        raise InvalidInput(f"LoRA target {name!r} is a {type(layer).__name__}, not a Linear")
    return parent, attr, layer


def apply_lora(
    model: nn.Module,
    targets: Sequence[str],
    *,
    rank: int,
    alpha: float,
    seed: int,
    modules_to_save: Sequence[str] = (),
) -> None:
    """Replace the named ``nn.Linear`` submodules of ``model`` with :class:`LoRALinear`.

    Every other parameter of ``model`` is frozen, except those of ``modules_to_save``
    (PEFT's term): layers trained in full and saved whole with the adapter, as a
    classifier's output layer is when the adapter teaches it a new class.

    Args:
        model: the model to adapt, in place.
        targets: dotted module names, e.g. ``["encoder.proj", "head.fc1"]``.
        rank: the rank ``r`` of each update.
        alpha: the LoRA alpha (the update is scaled by ``alpha / rank``).
        seed: seeds the initialisation of the ``A`` matrices.
        modules_to_save: dotted names of ``nn.Linear`` layers to train in full.

    Raises:
        InvalidInput: a target is missing, is not an ``nn.Linear``, or is also in
            ``modules_to_save``.
    """
    both = set(targets) & set(modules_to_save)
    if both:
        raise InvalidInput(f"layers {sorted(both)} are both LoRA targets and modules to save")
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    for name in targets:
        parent, attr, layer = _linear(model, name)
        setattr(parent, attr, LoRALinear(layer, rank=rank, alpha=alpha, generator=gen))
    for name in modules_to_save:
        for p in _linear(model, name)[2].parameters():
            p.requires_grad_(True)


def lora_state_dict(model: nn.Module, modules_to_save: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """The adapter's tensors: ``<target>.lora_A.weight`` and ``<target>.lora_B.weight`` per
    LoRA layer, and ``<module>.weight`` and ``<module>.bias`` per module saved whole."""
    out: dict[str, torch.Tensor] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, LoRALinear):
            out[f"{name}.lora_A.weight"] = mod.lora_A.detach().clone().contiguous()
            out[f"{name}.lora_B.weight"] = mod.lora_B.detach().clone().contiguous()
    for name in modules_to_save:
        layer = _linear(model, name)[2]
        out[f"{name}.weight"] = layer.weight.detach().clone().contiguous()
        out[f"{name}.bias"] = layer.bias.detach().clone().contiguous()
    return out
