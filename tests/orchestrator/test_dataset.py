"""The generated threat dataset and the featurizer: determinism, coverage, splits, the hashing spec."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sentenialx.hub.errors import InvalidInput
from sentenialx.orchestrator.dataset import KINDS, LABELS, NEW_FAMILY, SPLITS, Dataset, make_dataset
from sentenialx.pipeline.features import FeatureSpec, featurize


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return make_dataset(0)


def test_same_seed_same_digest_other_seed_other_digest(ds: Dataset) -> None:
    again = make_dataset(0)
    assert again.digest() == ds.digest()
    assert again == ds
    other = make_dataset(1)
    assert other.digest() != ds.digest()
    assert set(other.texts) != set(ds.texts)


def test_digest_is_sha256_of_the_written_jsonl(ds: Dataset, tmp_path: Path) -> None:
    path = ds.write_jsonl(tmp_path / "data.jsonl")
    raw = path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == ds.digest()
    lines = raw.decode().splitlines()
    header = json.loads(lines[0])
    assert header["label_names"] == list(LABELS) and header["size"] == len(ds)
    first = json.loads(lines[1])
    assert set(first) == {"text", "label", "label_id", "split", "kind"}
    assert LABELS[first["label_id"]] == first["label"]
    # Canonical: sorted keys, compact separators.
    assert lines[1] == json.dumps(first, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert len(lines) == len(ds) + 1
    assert Dataset.read_jsonl(path) == ds
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n")
    with pytest.raises(InvalidInput):
        Dataset.read_jsonl(tmp_path / "bad.jsonl")


def test_every_class_in_every_split_with_the_asked_size(ds: Dataset) -> None:
    assert ds.label_names == LABELS
    assert ds.counts() == dict.fromkeys(LABELS, 600)
    for split in SPLITS:
        part = ds.split(split)
        assert set(part.counts().values()) == {len(part) // len(LABELS)}
    assert ds.split("train").counts()["benign"] == 420
    assert ds.split("test").counts()["benign"] == 90
    assert set(ds.kinds) == set(KINDS)


def test_held_out_splits_are_disjoint_and_texts_unique(ds: Dataset) -> None:
    assert len(set(ds.texts)) == len(ds)
    train, val, test = (set(ds.split(s).texts) for s in SPLITS)
    assert not (train & test) and not (train & val) and not (val & test)


def test_every_carrier_appears_among_benign_examples(ds: Dataset) -> None:
    benign = ds.only("benign")
    assert set(benign.kinds) == set(KINDS)


def test_holding_out_a_family_keeps_the_label_vocabulary(ds: Dataset) -> None:
    base = ds.without(NEW_FAMILY)
    assert base.label_names == LABELS
    assert base.counts()[NEW_FAMILY] == 0
    assert len(base) == len(ds) - 600
    assert ds.without(None) is ds
    assert base.digest() != ds.digest()


def test_bad_arguments_are_refused(ds: Dataset) -> None:
    with pytest.raises(InvalidInput):
        ds.without("ransomware")
    with pytest.raises(InvalidInput):
        ds.split("holdout")
    with pytest.raises(InvalidInput):
        make_dataset(0, per_class=5)
    with pytest.raises(InvalidInput):
        make_dataset(0, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(InvalidInput):
        Dataset(texts=("a",), labels=(0, 1), splits=("train",), kinds=("chat",))


def _reference_row(text: str, buckets: int = 4096, ngram: int = 3) -> np.ndarray:
    """The documented algorithm, written out plainly."""
    s = " " + text.lower() + " "
    row = np.zeros(buckets, dtype=np.float64)
    for i in range(len(s) - ngram + 1):
        h = 2166136261
        for ch in s[i : i + ngram]:
            h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
        row[h % buckets] += 1
    row = np.log1p(row)
    norm = np.linalg.norm(row)
    return row / norm if norm else row


def test_featurize_follows_the_documented_algorithm(ds: Dataset) -> None:
    texts = [*ds.texts[::401], "", "a", "ÉCOLE 🙂 ../../etc/passwd", "x" * 3]
    x = featurize(texts)
    assert x.shape == (len(texts), 4096) and x.dtype == np.float32
    for i, t in enumerate(texts):
        np.testing.assert_allclose(x[i], _reference_row(t), atol=1e-6)
    assert not x[texts.index("")].any()
    small = featurize(["GET /x HTTP/1.1"], buckets=64, ngram=2)
    np.testing.assert_allclose(small[0], _reference_row("GET /x HTTP/1.1", 64, 2), atol=1e-6)


def test_featurize_is_deterministic_and_batch_independent(ds: Dataset) -> None:
    texts = list(ds.texts[:50])
    whole = featurize(texts)
    np.testing.assert_array_equal(whole, featurize(texts))
    np.testing.assert_array_equal(whole[7:8], featurize(texts[7:8]))
    norms = np.linalg.norm(whole, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_featurize_refuses_bad_input() -> None:
    with pytest.raises(InvalidInput):
        featurize(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        featurize(["ok"], buckets=4)
    with pytest.raises(InvalidInput):
        FeatureSpec.from_dict({"featurizer": "word-hash/v9"})
    assert featurize([]).shape == (0, 4096)


def test_package_imports_and_featurizes_without_torch() -> None:
    code = (
        "import sys\n"
        "import sentenialx.orchestrator as o\n"
        "x = o.featurize(['GET /?q=1 HTTP/1.1'])\n"
        "assert x.shape == (1, o.BUCKETS)\n"
        "heavy = [m for m in ('torch', 'onnx', 'matplotlib', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
