"""The text featurizer (hashed character n-grams, numpy alone) and the label vocabulary.

This half of the text encoder has no weights and runs without torch, so the
inference pipeline can featurize with numpy and hand the result to an ONNX
graph (which holds the learned half: the encoder projection and the classifier).

The algorithm is fixed and written down here so it can be reimplemented
anywhere (it never uses Python's ``hash()``, which is salted per process):

1. ``s = " " + text.lower() + " "`` (the spaces mark the word edges at both ends);
2. for every window of ``ngram`` consecutive Unicode code points of ``s``, the
   32-bit FNV-1a hash over the code points (``h = 2166136261``; per code point
   ``h ^= cp; h *= 16777619`` modulo 2**32), bucket ``h % buckets``;
3. value ``log1p(count)`` per bucket, then the row is scaled to unit L2 norm
   (a text shorter than ``ngram - 2`` characters gives a row of zeros).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sentenialx.hub.errors import InvalidInput

__all__ = ["BUCKETS", "FEATURIZER", "LABELS", "NGRAM", "FeatureSpec", "featurize"]

LABELS: tuple[str, ...] = (
    "benign",
    "sql_injection",
    "xss",
    "command_injection",
    "path_traversal",
    "prompt_injection",
    "credential_phishing",
)
"""Label names in output order: index ``i`` of a model's output is ``LABELS[i]``.

Inference reads a graph's own label order from its metadata and falls back to
this one; training writes it into every graph it exports.
"""

BUCKETS = 4096
NGRAM = 3
FEATURIZER = "char-ngram-fnv1a32-log1p-l2/v1"
"""Name and version of the algorithm above; bumped if any step changes."""

_FNV_OFFSET = np.uint32(2166136261)
_FNV_PRIME = np.uint32(16777619)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """How texts become feature rows; recorded with every model that consumes them.

    Attributes:
        buckets: the width of a feature row.
        ngram: characters per n-gram.
    """

    buckets: int = BUCKETS
    ngram: int = NGRAM

    def __post_init__(self) -> None:
        if not 1 <= self.ngram <= 8:
            raise InvalidInput(f"ngram must be between 1 and 8 (got {self.ngram})")
        if not 16 <= self.buckets <= 1 << 20:
            raise InvalidInput(f"buckets must be between 16 and 1048576 (got {self.buckets})")

    def featurize(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """:func:`featurize` with this spec."""
        return featurize(texts, buckets=self.buckets, ngram=self.ngram)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, as stored in model metadata."""
        return {"featurizer": FEATURIZER, "buckets": self.buckets, "ngram": self.ngram}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            InvalidInput: the dict names another featurizer or holds bad sizes.
        """
        name = data.get("featurizer", FEATURIZER)
        if name != FEATURIZER:
            raise InvalidInput(f"featurizer {name!r} is not {FEATURIZER!r}; this code cannot reproduce it")
        return cls(buckets=int(data.get("buckets", BUCKETS)), ngram=int(data.get("ngram", NGRAM)))


def featurize(texts: Sequence[str], *, buckets: int = BUCKETS, ngram: int = NGRAM) -> npt.NDArray[np.float32]:
    """Hash the character n-grams of each text into a fixed-width float32 row.

    Deterministic across processes and machines (see the module docstring for the
    exact algorithm); needs numpy only.

    Args:
        texts: the inputs; any sequence of ``str``.
        buckets: the width of a row (the model's input width).
        ngram: characters per n-gram.

    Returns:
        An array of shape ``(len(texts), buckets)``, dtype float32, each row of
        unit L2 norm (or all zeros for a text too short to hold an n-gram).

    Raises:
        InvalidInput: a text is not a ``str``, or ``buckets``/``ngram`` is out of range.
    """
    FeatureSpec(buckets=buckets, ngram=ngram)  # validates the sizes
    n_rows = len(texts)
    out = np.zeros((n_rows, buckets), dtype=np.float32)
    if n_rows == 0:
        return out
    padded: list[str] = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInput(f"text {i} is a {type(t).__name__}, not a str")
        padded.append(f" {t.lower()} ")
    lengths = np.fromiter((len(p) for p in padded), dtype=np.int64, count=n_rows)
    # All texts in one code-point array, so the hashing is a few vector operations
    # over the whole batch instead of a Python loop per n-gram.
    cps = np.frombuffer("".join(padded).encode("utf-32-le"), dtype="<u4")
    n_windows = cps.size - ngram + 1
    if n_windows <= 0:
        return out
    h = np.full(n_windows, _FNV_OFFSET, dtype=np.uint32)
    for k in range(ngram):
        h ^= cps[k : k + n_windows]
        h *= _FNV_PRIME  # uint32 arithmetic wraps modulo 2**32, as FNV requires
    ends = np.cumsum(lengths)
    row_of = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)[:n_windows]
    # A window is an n-gram of one text only when it ends inside that text.
    valid = np.arange(n_windows, dtype=np.int64) + ngram <= ends[row_of]
    rows = row_of[valid]
    cols = (h[valid] % np.uint32(buckets)).astype(np.int64)
    np.add.at(out, (rows, cols), np.float32(1.0))
    np.log1p(out, out=out)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64)).astype(np.float32)
    np.divide(out, norms[:, None], out=out, where=norms[:, None] > 0)
    return out
