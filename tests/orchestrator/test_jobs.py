"""The job chain in tmp_path: encoder + teacher, distillation to one ONNX graph, LoRA.

The chain runs once per module (about 10 s of CPU); each test checks one property
of what it wrote, mostly by recomputing it independently (onnxruntime on the
held-out split, torch on the saved state dicts).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sentenialx.hub.errors import InvalidInput
from sentenialx.orchestrator import (
    BETTER_STUDENT,
    LABELS,
    NEW_FAMILY,
    JobResult,
    featurize,
    load_adapter,
    make_dataset,
    merge_adapter_onnx,
    open_session,
    predict_onnx,
    predict_proba_onnx,
    run_distill_job,
    run_encoder_and_teacher_job,
    run_lora_job,
)

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

METRIC_NAMES = {"accuracy", "false_positive_rate", "latency_p50_ms", "latency_p95_ms", "per_class"}
ROLES = {"log", "chart", "report", "config"}


@dataclass
class Chain:
    teacher: JobResult
    distill: JobResult
    lora: JobResult


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    root = tmp_path_factory.mktemp("orchestrator")
    teacher = run_encoder_and_teacher_job(root / "teacher")
    distill = run_distill_job(root / "distill", encoder=teacher.files[0], teacher=teacher.files[1])
    lora = run_lora_job(root / "lora", base=distill.files[0])
    return Chain(teacher, distill, lora)


@pytest.fixture(scope="module")
def test_split() -> Any:
    """The held-out test split of the classes the base models were trained on."""
    return make_dataset(0).without(NEW_FAMILY).split("test")


def _all(chain: Chain) -> list[JobResult]:
    return [chain.teacher, chain.distill, chain.lora]


def _load_classifier(encoder: Path, head_sd: dict[str, Any]) -> Any:
    from sentenialx.orchestrator.models import Classifier, encoder_from_state_dict, head_from_state_dict

    enc = encoder_from_state_dict(torch.load(encoder, weights_only=True))
    return Classifier(enc, head_from_state_dict(head_sd)).eval()


def _torch_predict(model: Any, texts: tuple[str, ...]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(featurize(texts))).argmax(1).numpy()


# -- what each job wrote ------------------------------------------------------------------


def test_each_job_describes_its_files(chain: Chain) -> None:
    assert [p.name for p in chain.teacher.files] == ["encoder.pt", "teacher.pt"]
    assert [p.name for p in chain.distill.files] == ["threat_student.onnx"]
    assert [p.relative_to(chain.lora.out_dir).as_posix() for p in chain.lora.files] == [
        "adapter/adapter.safetensors"
    ]
    for r in _all(chain):
        assert all(p.is_file() for p in r.files)
        assert {role for role, _ in r.attachments} <= ROLES
        assert all(p.is_file() for _, p in r.attachments)
        names = [p.name for _, p in r.attachments]
        assert len(names) == len(set(names))
        assert {"train_log.jsonl", "loss.png", "accuracy.png"} <= set(names)
        meta = r.metadata
        assert {"framework", "format", "description", "params", "inputs", "outputs", "metrics"} <= set(meta)
        assert METRIC_NAMES <= set(meta["metrics"])
        # JSON without NaN, numbers (or a dict of numbers) as metrics: what the hub accepts.
        json.dumps(meta, allow_nan=False)
        for k, v in meta["metrics"].items():
            assert isinstance(v, int | float) or all(isinstance(x, int | float) for x in v.values()), k
        assert len(r.lineage["data_digest"]) == 64
        assert JobResult.load(r.out_dir) == r
    assert chain.distill.lineage["parents"] == {"teacher": "teacher", "encoder": "encoder"}
    assert chain.lora.lineage["parents"] == {"base": "distill"}
    assert chain.teacher.lineage["data_digest"] == make_dataset(0).without(NEW_FAMILY).digest()
    assert chain.lora.lineage["data_digest"] == make_dataset(0).digest()
    assert chain.distill.metadata["inputs"]["features"]["shape"] == ["N", 4096]
    assert chain.distill.metadata["outputs"]["probs"]["shape"] == ["N", len(LABELS)]


def test_logs_are_json_lines_one_per_epoch(chain: Chain) -> None:
    for r in _all(chain):
        rows = [json.loads(line) for line in (r.out_dir / "train_log.jsonl").read_text().splitlines()]
        epochs = r.metadata["params"]["epochs"]
        assert [row["epoch"] for row in rows] == list(range(epochs + 1))
        for row in rows:
            assert {"step", "epoch", "loss", "accuracy", "val_accuracy", "val_loss"} <= set(row)
        assert rows[-1]["loss"] < rows[0]["loss"]
        assert rows[-1]["val_accuracy"] > rows[0]["val_accuracy"]


def test_charts_are_valid_pngs(chain: Chain) -> None:
    from matplotlib.image import imread

    for r in _all(chain):
        for _, p in r.attachments:
            if p.suffix != ".png":
                continue
            raw = p.read_bytes()
            assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
            width, height = struct.unpack(">II", raw[16:24])
            assert width >= 300 and height >= 200
            assert imread(p).shape[:2] == (height, width)


def test_state_dicts_load_weights_only(chain: Chain) -> None:
    from sentenialx.hub.loaders.torch import load_torch

    encoder, teacher = chain.teacher.files
    sd = torch.load(encoder, weights_only=True)
    assert type(sd) is dict and set(sd) == {"proj.weight", "proj.bias"}
    assert tuple(sd["proj.weight"].shape) == (128, 4096)
    head = torch.load(teacher, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in head.values())
    assert head["out.weight"].shape[0] == len(LABELS)
    # The hub's loader (static pickle scan, then weights_only) accepts both as well.
    for path, expected in ((encoder, sd), (teacher, head)):
        loaded = load_torch(path.read_bytes(), name=path.name)
        assert isinstance(loaded, dict) and set(loaded) == set(expected)


# -- the distilled student ----------------------------------------------------------------


def test_onnx_interface(chain: Chain) -> None:
    model = onnx.load(chain.distill.files[0])
    onnx.checker.check_model(model)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "features" and out.name == "probs"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT == out.type.tensor_type.elem_type
    in_dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim]
    assert isinstance(in_dims[0], str) and in_dims[1] == 4096
    assert isinstance(out_dims[0], str) and out_dims[1] == len(LABELS)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["sentenialx.labels"]) == list(LABELS)
    probs = open_session(chain.distill.files[0].read_bytes()).run(
        ["probs"], {"features": np.zeros((3, 4096), np.float32)}
    )[0]
    assert probs.shape == (3, len(LABELS)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_student_reaches_95_percent_on_the_held_out_split(chain: Chain, test_split: Any) -> None:
    session = ort.InferenceSession(str(chain.distill.files[0]), providers=["CPUExecutionProvider"])
    preds = predict_onnx(session, test_split.texts)
    truth = [LABELS[y] for y in test_split.labels]
    accuracy = np.mean([p == t for (p, _), t in zip(preds, truth, strict=True)])
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(chain.distill.metrics["accuracy"])
    assert all(0.0 <= score <= 1.0 for _, score in preds)
    report = (chain.distill.out_dir / "report.md").read_text()
    assert f"**{accuracy:.4f}**, which meets the 0.95 bar" in report
    for name in LABELS[:-1]:
        assert f"| {name} |" in report
    assert "p95" in report and "Agreement" in report


def test_onnx_matches_torch_and_embeds_the_frozen_encoder(chain: Chain, test_split: Any) -> None:
    from sentenialx.orchestrator.export import onnx_linear_layers

    layers = onnx_linear_layers(chain.distill.files[0].read_bytes())
    enc_sd = torch.load(chain.teacher.files[0], weights_only=True)
    np.testing.assert_array_equal(layers["encoder.proj"][0], enc_sd["proj.weight"].numpy())
    head_sd = {
        f"{name.removeprefix('head.')}.{part}": torch.from_numpy(arr.copy())
        for name, (w, b) in layers.items()
        if name.startswith("head.")
        for part, arr in (("weight", w), ("bias", b))
    }
    student = _load_classifier(chain.teacher.files[0], head_sd)
    torch_pred = _torch_predict(student, test_split.texts)
    session = open_session(chain.distill.files[0].read_bytes())
    onnx_pred = predict_proba_onnx(session, test_split.texts).argmax(1)
    np.testing.assert_array_equal(onnx_pred, torch_pred)
    assert chain.distill.metrics["onnx_torch_agreement"] == 1.0


def test_student_agrees_with_teacher(chain: Chain, test_split: Any) -> None:
    teacher = _load_classifier(chain.teacher.files[0], torch.load(chain.teacher.files[1], weights_only=True))
    teacher_pred = _torch_predict(teacher, test_split.texts)
    session = open_session(chain.distill.files[0].read_bytes())
    student_pred = predict_proba_onnx(session, test_split.texts).argmax(1)
    agreement = float((teacher_pred == student_pred).mean())
    assert agreement >= 0.97
    assert agreement == pytest.approx(chain.distill.metrics["agreement"])
    assert np.mean(teacher_pred == np.asarray(test_split.labels)) == pytest.approx(
        chain.distill.metrics["teacher_accuracy"]
    )
    assert chain.distill.metrics["parameters"] < chain.distill.metrics["teacher_parameters"]


def test_latency_is_measured(chain: Chain) -> None:
    m = chain.distill.metrics
    assert 0 < m["latency_p50_ms"] <= m["latency_p95_ms"]
    assert 0 < m["model_latency_p50_ms"] <= m["model_latency_p95_ms"]


# -- the LoRA adapter ----------------------------------------------------------------------


def test_lora_teaches_the_new_family(chain: Chain) -> None:
    ds = make_dataset(0).split("test")
    new = ds.only(NEW_FAMILY)
    base_bytes = chain.distill.files[0].read_bytes()
    tensors, config = load_adapter(chain.lora.files[0].parent)
    assert 4 <= config.r <= 8 and config.target_modules and config.new_family == NEW_FAMILY
    before = predict_onnx(open_session(base_bytes), new.texts)
    merged = open_session(merge_adapter_onnx(base_bytes, tensors, config))
    after = predict_onnx(merged, new.texts)
    acc_before = np.mean([label == NEW_FAMILY for label, _ in before])
    acc_after = np.mean([label == NEW_FAMILY for label, _ in after])
    assert acc_before <= 0.1 and acc_after >= 0.9
    assert acc_after == pytest.approx(chain.lora.metrics["new_family_accuracy"])
    assert acc_before == pytest.approx(chain.lora.metrics["new_family_accuracy_before"])
    overall = np.mean(
        [label == LABELS[y] for (label, _), y in zip(predict_onnx(merged, ds.texts), ds.labels, strict=True)]
    )
    assert overall >= 0.95
    assert chain.lora.metrics["known_accuracy"] >= chain.lora.metrics["known_accuracy_before"] - 0.01
    assert chain.lora.metrics["onnx_torch_agreement"] == 1.0
    cfg = json.loads((chain.lora.files[0].parent / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == config.r and cfg["lora_alpha"] == config.lora_alpha


def test_adapter_refuses_another_base(chain: Chain) -> None:
    tensors, config = load_adapter(chain.lora.files[0].parent)
    with pytest.raises(InvalidInput, match="sha256"):
        merge_adapter_onnx(chain.distill.files[0].read_bytes() + b"\0", tensors, config)


# -- determinism, the better student, bad input ----------------------------------------------


def test_jobs_are_deterministic(tmp_path: Path) -> None:
    """Same arguments, same bytes: weights, ONNX graph, adapter, logs and charts (a tiny chain)."""
    small: dict[str, Any] = {"per_class": 30, "latency_runs": 5}

    def chain_in(name: str, seed: int) -> list[JobResult]:
        root = tmp_path / name
        t = run_encoder_and_teacher_job(root / "t", seed=seed, epochs=1, embed_dim=16, hidden=(16,), **small)
        d = run_distill_job(root / "d", encoder=t.files[0], teacher=t.files[1], seed=seed, epochs=2, **small)
        lo = run_lora_job(root / "l", base=d.files[0], seed=seed, epochs=1, **small)
        return [t, d, lo]

    a, b, c = chain_in("a", 0), chain_in("b", 0), chain_in("c", 1)
    for ra, rb in zip(a, b, strict=True):
        # Reports and job.json hold latency measurements, which vary from run to run.
        for p in [*ra.files, *(p for role, p in ra.attachments if role != "report")]:
            rel = p.relative_to(ra.out_dir)
            assert p.read_bytes() == (rb.out_dir / rel).read_bytes(), rel
        assert ra.lineage == rb.lineage
    assert a[0].files[0].read_bytes() != c[0].files[0].read_bytes()


def test_better_student_beats_the_default(chain: Chain, tmp_path: Path) -> None:
    better = run_distill_job(
        tmp_path / "better", encoder=chain.teacher.files[0], teacher=chain.teacher.files[1], **BETTER_STUDENT
    )
    base, new = chain.distill.metrics, better.metrics
    assert new["accuracy"] > base["accuracy"]
    assert new["false_positive_rate"] <= base["false_positive_rate"]
    assert new["agreement"] >= base["agreement"]
    assert better.lineage["data_digest"] == chain.distill.lineage["data_digest"]


@pytest.mark.parametrize(
    ("job", "kwargs"),
    [
        (run_encoder_and_teacher_job, {"holdout": "ransomware"}),
        (run_encoder_and_teacher_job, {"epochs": 0}),
        (run_distill_job, {"encoder": Path("/nonexistent/encoder.pt"), "teacher": Path("/nonexistent/t.pt")}),
        (run_lora_job, {"base": Path("/nonexistent/threat_student.onnx")}),
    ],
)
def test_bad_arguments_are_refused(
    job: Callable[..., JobResult], kwargs: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput):
        job(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


# -- what the hub gets -----------------------------------------------------------------------


def test_results_register_in_a_hub(chain: Chain, hub: Any) -> None:
    enc = hub.register("encoder", chain.teacher.files[0], **chain.teacher.register_kwargs())
    hub.register("teacher", chain.teacher.files[1], **chain.teacher.register_kwargs())
    student = hub.register("distill", chain.distill.files[0], **chain.distill.register_kwargs())
    assert {p["role"]: p["model"] for p in student.lineage["parents"]} == {
        "teacher": "teacher",
        "encoder": "encoder",
    }
    assert (
        student.lineage["data_digest"] == chain.distill.lineage["data_digest"] == enc.lineage["data_digest"]
    )
    assert student.meta["metrics"]["accuracy"] == chain.distill.metrics["accuracy"]
    lora = hub.register(
        "lora",
        chain.lora.files[0].parent,
        **chain.lora.register_kwargs({"base": f"distill@{student.version}"}),
    )
    assert lora.lineage["parents"][0]["version"] == student.version
    session = hub.load(f"distill@{student.version}")
    assert predict_onnx(session, ["GET /item?id=1' UNION SELECT password FROM users-- HTTP/1.1"])[0][0] == (
        "sql_injection"
    )
