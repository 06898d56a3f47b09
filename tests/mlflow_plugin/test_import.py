"""`sentenialx models import-mlflow` against a real MLflow registry (sqlite backend, local artifacts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentenialx.hub.hub import Hub

from .conftest import MlflowRegistry, sha256, tree


def _files(hub: Hub, ref: str) -> dict[str, bytes]:
    info = hub.resolve(ref)
    prefix = info.stem + "/"
    return {f.path.removeprefix(prefix): hub.read_entry(info, f) for f in info.files}


def test_a_registry_is_imported_with_its_lineage_and_a_rerun_adds_nothing(
        hub: Hub, cli: Callable[..., Any], mlflow_registry: MlflowRegistry,
        mlflow_env: Callable[[str], None], snapshot: Callable[[Hub], dict[str, Any]],
        tmp_path: Path) -> None:
    reg = mlflow_registry
    r = cli("import-mlflow", "--tracking-uri", reg.tracking_uri, "--model", "distill")
    assert r.exit_code == 0, r.stderr
    assert "2 imported, 0 already there, 2 aliases moved" in r.stdout
    assert [v.version for v in hub.versions("distill")] == ["1.0.0", "2.0.0"]
    for n in (1, 2):
        info = hub.resolve(f"distill@{n}.0.0")
        # Every byte as MLflow holds it, hashed into the manifest.
        assert _files(hub, info.ref) == reg.files[f"distill/{n}"]
        assert {f.path.removeprefix(info.stem + "/"): f.sha256 for f in info.files} == {
            rel: sha256(b) for rel, b in reg.files[f"distill/{n}"].items()}
        src = info.meta["mlflow"]
        assert src["run_id"] == reg.runs[f"distill/{n}"]
        assert src["source"] == reg.sources[f"distill/{n}"]
        assert (src["model"], src["version"]) == ("distill", n)
        assert info.meta["metrics"] == reg.metrics[f"distill/{n}"]
        assert info.meta["params"] == {"temperature": "4"}
    v2 = hub.resolve("distill@2.0.0")
    assert v2.meta["mlflow"]["tags"] == {"reviewed_by": "alice"}
    assert v2.meta["mlflow"]["model_tags"] == {"team": "threat-intel"}
    assert v2.meta["description"] == "the distilled student"
    # A gated alias moves only through its gates: left alone, and the import says so.
    assert {a.alias: a.version for a in hub.aliases("distill")} == {"champion": "1.0.0",
                                                                    "staging": "2.0.0"}
    assert "distill@production is gated" in r.stderr and "models promote distill@1.0.0" in r.stderr
    assert hub.fsck().ok

    before = snapshot(hub)
    again = cli("import-mlflow", "--tracking-uri", reg.tracking_uri, "--json")
    assert again.exit_code == 0, again.stderr
    by_model = {(v["model"], v["status"]) for v in again.json()["versions"]}
    assert ("distill", "present") in by_model and ("distill", "imported") not in by_model
    # lora was not asked for the first time: it comes in now, distill stays as it was.
    assert [v.version for v in hub.versions("lora")] == ["1.0.0", "2.0.0"]
    after = snapshot(hub)
    third = cli("import-mlflow", "--tracking-uri", reg.tracking_uri)
    assert third.exit_code == 0, third.stderr
    assert "0 imported, 4 already there, 0 aliases moved" in third.stdout
    assert snapshot(hub) == after != before

    # Read back through the plugin, the imported model downloads as MLflow laid it out.
    import mlflow

    mlflow_env(f"sentenialx://{hub.root}")
    got = mlflow.artifacts.download_artifacts("models:/distill@staging", dst_path=str(tmp_path / "o"))
    assert {k: v for k, v in tree(Path(got)).items() if k != "registered_model_meta"} == \
        reg.files["distill/2"]


def test_a_failed_download_adopts_nothing_of_that_version_and_a_rerun_resumes(
        hub: Hub, cli: Callable[..., Any], mlflow_registry: MlflowRegistry,
        snapshot: Callable[[Hub], dict[str, Any]]) -> None:
    reg = mlflow_registry
    art = Path(reg.sources["lora/2"].removeprefix("file://"))
    hidden = art.with_name("model.hidden")
    art.rename(hidden)
    try:
        r = cli("import-mlflow", "--tracking-uri", reg.tracking_uri, "--model", "lora")
        assert r.exit_code != 0
        assert "MLflow lora version 2" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert [v.version for v in hub.versions("lora")] == ["1.0.0"]
        rep = hub.fsck(model="lora")
        assert rep.ok, rep.problems  # no pending row, no stray file
        before = snapshot(hub)
    finally:
        hidden.rename(art)
    r = cli("import-mlflow", "--tracking-uri", reg.tracking_uri, "--model", "lora")
    assert r.exit_code == 0, r.stderr
    assert "1 imported, 1 already there" in r.stdout
    assert [v.version for v in hub.versions("lora")] == ["1.0.0", "2.0.0"]
    assert _files(hub, "lora@2.0.0") == reg.files["lora/2"]
    assert snapshot(hub) != before


def test_bad_input_is_refused_and_changes_nothing(
        hub: Hub, cli: Callable[..., Any], mlflow_registry: MlflowRegistry,
        snapshot: Callable[[Hub], dict[str, Any]], tmp_path: Path) -> None:
    before = snapshot(hub)
    r = cli("import-mlflow", "--tracking-uri", mlflow_registry.tracking_uri, "--model", "../x")
    assert r.exit_code == 5 and "path separator" in r.stderr
    r = cli("import-mlflow", "--tracking-uri", mlflow_registry.tracking_uri, "--model", "nosuch")
    assert r.exit_code == 3 and "nosuch" in r.stderr
    missing = tmp_path / "no-such-mlflow.db"
    r = cli("import-mlflow", "--tracking-uri", f"sqlite:///{missing}")
    assert r.exit_code == 5 and "no MLflow database" in r.stderr
    assert not missing.exists()  # MLflow would have created an empty registry
    r = cli("import-mlflow", "--tracking-uri", "bogus://host/x")
    assert r.exit_code == 5 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert snapshot(hub) == before


def test_the_recorded_tracking_uri_carries_no_credentials() -> None:
    from sentenialx.hub._import_mlflow import _without_secrets

    assert _without_secrets("https://alice:s3cret@mlflow.internal:5000/x") == \
        "https://mlflow.internal:5000/x"
    assert _without_secrets("https://token@mlflow.internal/") == "https://mlflow.internal/"
    assert _without_secrets("sqlite:////srv/mlflow.db") == "sqlite:////srv/mlflow.db"
