"""Hub jobs: train from verified hub inputs and register everything, with lineage.

The jobs themselves are tested in ``test_jobs.py``; here we check what reaches the
hub: versions with metrics under stable names, parameters, attachments (log,
charts, report), lineage that resolves, the LoRA adapter as a folder version,
and the student's held-out accuracy recomputed from the hub-loaded ONNX session.
The trained hub is built once per session (``trained_hub`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from sentenialx.hub.errors import NotFound
from sentenialx.hub.hub import Hub
from sentenialx.orchestrator import LABELS, NEW_FAMILY, make_dataset, predict_onnx

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

STABLE_METRICS = ("accuracy", "false_positive_rate", "latency_p95_ms")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _say(request: pytest.FixtureRequest, msg: str) -> None:
    """Show a timing in the test run's output even when output is captured."""
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    cap = request.config.pluginmanager.getplugin("capturemanager")
    if tr is None or cap is None:  # pragma: no cover - e.g. under xdist
        print(msg)
        return
    with cap.global_and_fixture_disabled():
        tr.write_line(f"\n  [{request.node.name}] {msg}")


@pytest.fixture(scope="module")
def th(trained_hub: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One copy of the trained hub, read by every test of this module (none writes)."""
    h = trained_hub.copy(tmp_path_factory.mktemp("hubjobs") / "hub")
    yield h
    h.close()


def _refs(trained_hub: Any) -> dict[str, Any]:
    return {"encoder": trained_hub.encoder, "teacher": trained_hub.teacher,
            "distill": trained_hub.student, "lora": trained_hub.lora}


def test_training_time_is_reported(trained_hub: Any, record_property: Callable[..., None],
                                   request: pytest.FixtureRequest) -> None:
    record_property("train_base+distill+adapt+alt_seconds", round(trained_hub.seconds, 1))
    _say(request, f"trained hub (base + distill + adapt + a second student): {trained_hub.seconds:.1f} s")
    assert trained_hub.seconds > 0


def test_every_job_registered_one_version(th: Hub, trained_hub: Any) -> None:
    models = {m["model"]: m for m in th.models()}
    assert set(models) == {"encoder", "teacher", "distill", "lora"}
    for name, v in _refs(trained_hub).items():
        assert models[name]["versions"] == 1 and models[name]["latest"] == "1.0.0"
        assert th.resolve(name).digest == v.digest
    rep = th.verify(deep=True)
    assert rep.ok, rep.to_dict()
    assert th.fsck().ok


@pytest.mark.parametrize("model", ["encoder", "teacher", "distill", "lora"])
def test_metrics_under_stable_names_and_params(th: Hub, model: str) -> None:
    v = th.resolve(model)
    metrics = v.meta["metrics"]
    for name in STABLE_METRICS:
        assert isinstance(metrics[name], float), (model, name, metrics.get(name))
    assert 0.0 <= metrics["false_positive_rate"] <= 1.0
    assert 0.0 < metrics["latency_p95_ms"] < 1000.0
    assert isinstance(metrics["per_class"], dict) and metrics["per_class"]
    params = v.meta["params"]
    assert params["seed"] == 0 and params["epochs"] >= 1 and params["optimizer"] == "AdamW"
    assert re.fullmatch(r"[0-9a-f]{64}", params["dataset"]["digest"])
    # The metadata sidecar a person (or a gate) reads says the same.
    side = json.loads(th.store.read_bytes(f"{v.model}/{v.stem}_meta.json"))
    assert side["metadata"]["metrics"] == metrics and side["metadata"]["params"] == params
    assert v.meta["format"] == {"encoder": "torch", "teacher": "torch", "distill": "onnx",
                                "lora": "safetensors"}[model]


def test_distill_params_describe_the_distillation(th: Hub) -> None:
    p = th.resolve("distill").meta["params"]
    assert {"temperature", "alpha", "hidden", "lr", "batch_size"} <= set(p)
    assert p["dataset"]["holdout"] == NEW_FAMILY


@pytest.mark.parametrize("model", ["encoder", "teacher", "distill", "lora"])
def test_attachments_log_parses_and_charts_are_pngs(th: Hub, model: str) -> None:
    v = th.resolve(model)
    by_role: dict[str, list[str]] = {}
    for f in v.files:
        by_role.setdefault(f.role, []).append(f.path)
    assert len(by_role["weights"]) == 1
    assert len(by_role["log"]) == 1 and by_role["log"][0].endswith(".jsonl")
    assert len(by_role["chart"]) == 2
    lines = th.open_bytes(v.ref, file=by_role["log"][0]).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) >= v.meta["params"]["epochs"]
    assert all(isinstance(r, dict) for r in records)
    assert any("loss" in k for r in records for k in r)
    for chart in by_role["chart"]:
        data = th.open_bytes(v.ref, file=chart)
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, chart
    assert {Path(c).name.rsplit("_", 1)[-1] for c in by_role["chart"]} == {"loss.png", "accuracy.png"}


def test_distill_report_states_accuracy_and_teacher_vs_student(th: Hub) -> None:
    v = th.resolve("distill")
    reports = [f.path for f in v.files if f.role == "report"]
    assert len(reports) == 1
    report = th.open_bytes(v.ref, file=reports[0]).decode()
    acc = v.meta["metrics"]["accuracy"]
    assert acc >= 0.95
    assert f"Held-out test accuracy of the ONNX student: **{acc:.4f}**, which meets the 0.95 bar" in report
    assert "| class | teacher | student |" in report
    teacher_pc = v.meta["metrics"]["per_class"]
    for name in LABELS:
        if name == NEW_FAMILY:
            continue
        row = re.search(rf"^\| {name} \| (\d\.\d{{4}}) \| (\d\.\d{{4}}) \|$", report, re.M)
        assert row, name
        assert float(row.group(2)) == pytest.approx(teacher_pc[name], abs=1e-4)
    assert "p95" in report and "Agreement" in report


def test_lora_report_and_config(th: Hub, trained_hub: Any) -> None:
    v = th.resolve("lora")
    report = th.open_bytes(v.ref, file=next(f.path for f in v.files if f.role == "report")).decode()
    assert f"LoRA report: teaching `{NEW_FAMILY}`" in report
    cfg = json.loads(th.open_bytes(v.ref, file="adapter_config.json"))
    base_sha = hashlib.sha256(th.open_bytes(trained_hub.student.ref)).hexdigest()
    assert cfg["base_sha256"] == base_sha
    assert cfg["new_family"] == NEW_FAMILY


def test_distill_lineage_resolves_to_teacher_and_encoder(th: Hub) -> None:
    v = th.resolve("distill")
    parents = {p["role"]: p for p in v.lineage["parents"]}
    assert set(parents) == {"teacher", "encoder"}
    for role, p in parents.items():
        assert p["model"] == role and p["version"] == "1.0.0"
        assert re.fullmatch(r"[0-9a-f]{64}", p["digest"])
        assert th.resolve(f"{p['model']}@{p['version']}").digest == p["digest"]
        assert th.resolve(f"{p['model']}@sha256:{p['digest']}").ref == f"{role}@1.0.0"
    teacher = th.resolve("teacher")
    assert [(p["role"], p["model"], p["digest"]) for p in teacher.lineage["parents"]] == [
        ("encoder", "encoder", th.resolve("encoder").digest)]
    assert not th.resolve("encoder").lineage.get("parents")


def test_data_digest_is_the_dataset_the_jobs_used(th: Hub) -> None:
    without_new = make_dataset(0).without(NEW_FAMILY).digest()
    for model in ("encoder", "teacher", "distill"):
        assert th.resolve(model).lineage["data_digest"] == without_new, model
    # The adapter learns every family, the new one included.
    assert th.resolve("lora").lineage["data_digest"] == make_dataset(0).digest()
    # And the register event carries it into the tamper-evident history.
    regs = [e for e in th.events() if e.kind == "register" and e.model == "distill"]
    assert regs[-1].payload["data_digest"] == without_new


def test_lora_is_a_folder_version_whose_parent_is_the_base(th: Hub, trained_hub: Any) -> None:
    v = th.resolve("lora")
    assert v.layout == "dir"
    inside = {f.path.split("/", 1)[1]: f.role for f in v.files if f.path.startswith(v.stem + "/")}
    assert inside == {"adapter.safetensors": "weights", "adapter_config.json": "config"}
    folder = th.path("lora")
    assert folder.is_dir() and sorted(p.name for p in folder.iterdir()) == sorted(inside)
    (base,) = v.lineage["parents"]
    assert base["role"] == "base" and base["model"] == "distill" and base["version"] == "1.0.0"
    assert base["digest"] == trained_hub.student.digest == th.resolve("distill@1.0.0").digest
    tensors = th.load("lora", file="adapter.safetensors")
    assert tensors and all(k.startswith(("encoder.", "head.")) for k in tensors)


def test_student_reaches_95_percent_on_held_out_split_via_the_hub(th: Hub) -> None:
    test = make_dataset(0).without(NEW_FAMILY).split("test")
    session = th.load("distill@1.0.0")
    assert type(session).__name__ == "InferenceSession"
    preds = predict_onnx(session, test.texts)
    truth = np.array([LABELS[y] for y in test.labels])
    acc = float(np.mean(np.array([p for p, _ in preds]) == truth))
    assert acc >= 0.95
    assert acc == pytest.approx(th.resolve("distill").meta["metrics"]["accuracy"])


# -- the CLI ------------------------------------------------------------------------------


def test_train_all_cli_registers_everything(tmp_path: Path, record_property: Callable[..., None],
                                            request: pytest.FixtureRequest) -> None:
    from sentenialx.hub.cli import cli

    root = tmp_path / "hub"
    t0 = time.perf_counter()
    r = CliRunner().invoke(cli, ["train", "all", "--hub", str(root)],
                           env={"SENTENIALX_PROGRESS": "0"}, catch_exceptions=False)
    took = time.perf_counter() - t0
    record_property("train_all_seconds", round(took, 1))
    _say(request, f"sentenialx train all: {took:.1f} s")
    assert r.exit_code == 0, r.stderr
    assert "registered encoder@1.0.0, teacher@1.0.0" in r.stderr
    assert "registered distill@1.0.0" in r.stderr and "registered lora@1.0.0" in r.stderr
    with Hub(root) as h:
        assert {m["model"]: m["latest"] for m in h.models()} == {
            "encoder": "1.0.0", "teacher": "1.0.0", "distill": "1.0.0", "lora": "1.0.0"}
        assert h.resolve("lora").lineage["parents"][0]["ref"] == "distill@1.0.0"
        assert h.resolve("distill").meta["metrics"]["accuracy"] >= 0.95
        assert h.fsck().ok


@pytest.mark.parametrize("argv", [["train", "distill"], ["train", "lora", "--base", "distill@9.9.9"]])
def test_train_cli_on_missing_inputs_is_one_line_and_registers_nothing(tmp_path: Path,
                                                                       argv: list[str]) -> None:
    from sentenialx.hub.cli import cli

    root = tmp_path / "hub"
    r = CliRunner().invoke(cli, [*argv, "--hub", str(root)], env={"SENTENIALX_PROGRESS": "0"})
    assert r.exit_code not in (0, 1), (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr and "not" in r.stderr.lower()
    with Hub(root) as h:
        assert h.models() == []
        with pytest.raises(NotFound):
            h.resolve("distill")
