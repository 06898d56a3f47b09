"""The MLflow plugin with the real mlflow client: models:/ downloads from a local and a served hub."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from sentenialx.hub.hub import Hub

from .conftest import sha256, tree

# Added by MLflow's own ModelsArtifactRepository beside a downloaded MLmodel.
MLFLOW_META = "registered_model_meta"


def _expected(hub: Hub, ref: str) -> dict[str, tuple[int, str]]:
    """A version's files as the plugin lays them out, with size and sha256 from the manifest."""
    info = hub.resolve(ref)
    prefix = info.stem + "/"
    return {(f.path[len(prefix):] if info.layout == "dir" and f.path.startswith(prefix) else f.path):
            (f.size, f.sha256) for f in info.files}


def _got(path: str) -> dict[str, tuple[int, str]]:
    return {rel: (len(b), sha256(b)) for rel, b in tree(Path(path)).items() if rel != MLFLOW_META}


def _tamper(hub: Hub, ref: str) -> Path:
    """Change one byte of a version's weights file on the hub's disk (same size)."""
    info = hub.resolve(ref)
    p = hub.root / info.model / hub.weights_entry(info).path
    p.chmod(p.stat().st_mode | stat.S_IWUSR)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    return p


def test_alias_and_number_downloads_are_the_manifest_bytes(
        sample_hub: Hub, mlflow_env: Callable[[str], None], tmp_path: Path) -> None:
    import mlflow

    mlflow_env(f"sentenialx://{sample_hub.root}")
    got = mlflow.artifacts.download_artifacts("models:/distill@staging", dst_path=str(tmp_path / "a"))
    assert _got(got) == _expected(sample_hub, "distill@1.1.0")
    # Version 3 is the third registered: the folder version, laid out as MLflow would.
    got = mlflow.artifacts.download_artifacts("models:/distill/3", dst_path=str(tmp_path / "b"))
    assert _got(got) == _expected(sample_hub, "distill@2.0.0")
    assert {"MLmodel", "model.onnx", "config/tokenizer.json"} == set(_got(got))
    assert (Path(got) / MLFLOW_META).is_file()  # MLflow saw an MLmodel at the root
    # One file of it, and the listing MLflow's clients walk.
    one = mlflow.artifacts.download_artifacts("models:/distill/3/config/tokenizer.json",
                                              dst_path=str(tmp_path / "one"))
    info = sample_hub.resolve("distill@2.0.0")
    entry = next(f for f in info.files if f.path.endswith("/config/tokenizer.json"))
    assert sha256(Path(one).read_bytes()) == entry.sha256
    assert tree(tmp_path / "one") == {"config/tokenizer.json": Path(one).read_bytes()}
    listed = mlflow.artifacts.list_artifacts("models:/distill/3")
    assert [(f.path, f.is_dir) for f in listed] == [("MLmodel", False), ("config", True),
                                                    ("model.onnx", False)]
    got = mlflow.artifacts.download_artifacts("models:/distill/1", dst_path=str(tmp_path / "c"))
    assert _got(got) == _expected(sample_hub, "distill@1.0.0")
    assert len(_got(got)) == 2  # weights and the training log
    got = mlflow.artifacts.download_artifacts("models:/distill/latest", dst_path=str(tmp_path / "d"))
    assert _got(got) == _expected(sample_hub, "distill@2.0.0")
    # A stage is the alias of that name.
    got = mlflow.artifacts.download_artifacts("models:/distill/Candidate",
                                              dst_path=str(tmp_path / "e"))
    assert _got(got) == _expected(sample_hub, "distill@candidate")


def test_the_trust_policy_applies(sample_hub: Hub, mlflow_env: Callable[[str], None],
                                  tmp_path: Path) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    # `production` needs a trusted signature by default, whoever asks for the version.
    sample_hub.set_alias("distill@1.1.0", "production", force=True)
    mlflow_env(f"sentenialx://{sample_hub.root}")
    dst = tmp_path / "out"
    with pytest.raises(MlflowException, match="is not signed") as exc:
        mlflow.artifacts.download_artifacts("models:/distill/2", dst_path=str(dst))
    assert exc.value.error_code == "PERMISSION_DENIED"
    assert tree(dst) == {}


def test_the_client_sees_numbers_tags_and_aliases(sample_hub: Hub,
                                                  mlflow_env: Callable[[str], None]) -> None:
    from mlflow import MlflowClient

    mlflow_env(f"sentenialx://{sample_hub.root}")
    c = MlflowClient()
    mv = c.get_model_version_by_alias("distill", "staging")
    info = sample_hub.resolve("distill@1.1.0")
    assert (int(mv.version), mv.tags["sentenialx.version"]) == (2, "1.1.0")
    assert mv.tags["sentenialx.digest"] == f"sha256:{info.digest}"
    assert mv.aliases == ["staging"] and mv.description == "second student"
    rm = c.get_registered_model("distill")
    assert rm.aliases == {"candidate": "3", "staging": "2"}
    assert [int(v.version) for v in rm.latest_versions] == [3]
    found = c.search_model_versions("name = 'distill'")
    assert sorted(int(v.version) for v in found) == [1, 2, 3]
    assert [m.name for m in c.search_registered_models()] == ["distill"]
    src = c.get_model_version_download_uri("distill", "2")
    assert src.startswith(f"sentenialx://{sample_hub.root}?") and f"digest={info.digest}" in src


def test_numbers_are_registration_order_and_never_reused(
        sample_hub: Hub, mlflow_env: Callable[[str], None], tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow_env(f"sentenialx://{sample_hub.root}")
    w = tmp_path / "late.onnx"
    w.write_bytes(b"a late patch release" * 100)
    sample_hub.register("distill", w, version="1.0.1")  # a lower semver, registered 4th
    sample_hub.delete("distill@1.0.0", confirm=True)
    sample_hub.register("distill", w, version="1.0.0")  # the semver again: a new registration
    c = MlflowClient()
    assert c.get_model_version("distill", "4").tags["sentenialx.version"] == "1.0.1"
    assert c.get_model_version("distill", "5").tags["sentenialx.version"] == "1.0.0"
    assert c.get_model_version("distill", "2").tags["sentenialx.version"] == "1.1.0"
    with pytest.raises(MlflowException, match=r"version=1\) not found") as exc:
        c.get_model_version("distill", "1")
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert sorted(int(v.version) for v in c.search_model_versions("name='distill'")) == [2, 3, 4, 5]


def test_a_tampered_file_is_refused_and_nothing_is_written(
        sample_hub: Hub, mlflow_env: Callable[[str], None], tmp_path: Path) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow_env(f"sentenialx://{sample_hub.root}")
    _tamper(sample_hub, "distill@1.1.0")
    dst = tmp_path / "out"
    with pytest.raises(MlflowException, match="sha256 mismatch") as exc:
        mlflow.artifacts.download_artifacts("models:/distill@staging", dst_path=str(dst))
    assert exc.value.error_code == "DATA_LOSS"
    assert tree(dst) == {}
    # A folder version with one changed member leaves none of its files behind either.
    info = sample_hub.resolve("distill@2.0.0")
    member = sample_hub.root / "distill" / info.stem / "model.onnx"
    member.chmod(0o644)
    member.write_bytes(member.read_bytes()[:-1] + b"\x00")
    with pytest.raises(MlflowException, match="sha256 mismatch"):
        mlflow.artifacts.download_artifacts("models:/distill/3", dst_path=str(dst))
    assert tree(dst) == {}


def test_served_hub_downloads_verified_files_and_refuses_tampered_ones(
        sample_hub: Hub, mlflow_env: Callable[[str], None], serve: Callable[[Hub], str],
        tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow_env(f"sentenialx+http://{serve(sample_hub)}")
    got = mlflow.artifacts.download_artifacts("models:/distill@staging", dst_path=str(tmp_path / "a"))
    assert _got(got) == _expected(sample_hub, "distill@1.1.0")
    got = mlflow.artifacts.download_artifacts("models:/distill/3", dst_path=str(tmp_path / "b"))
    assert _got(got) == _expected(sample_hub, "distill@2.0.0")
    assert MlflowClient().get_model_version_by_alias("distill", "candidate").version == 3
    # The server streams what is on its disk; the client hashes it and refuses.
    _tamper(sample_hub, "distill@1.0.0")
    dst = tmp_path / "c"
    with pytest.raises(MlflowException, match="sha256 mismatch"):
        mlflow.artifacts.download_artifacts("models:/distill/1", dst_path=str(dst))
    assert tree(dst) == {}


def test_writes_bad_uris_and_unknown_names_are_refused(
        sample_hub: Hub, mlflow_env: Callable[[str], None], tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    before = [v.to_dict() for v in sample_hub.versions("distill")], sample_hub.aliases("distill")
    mlflow_env(f"sentenialx://{sample_hub.root}")
    c = MlflowClient()
    for call in (lambda: c.create_registered_model("x"),
                 lambda: c.set_registered_model_alias("distill", "production", "1"),
                 lambda: c.delete_model_version("distill", "1")):
        with pytest.raises(MlflowException, match="read-only through MLflow") as exc:
            call()
        assert exc.value.error_code == "NOT_IMPLEMENTED"
    assert ([v.to_dict() for v in sample_hub.versions("distill")],
            sample_hub.aliases("distill")) == before
    with pytest.raises(MlflowException, match="alias nope not found") as exc:
        mlflow.artifacts.download_artifacts("models:/distill@nope", dst_path=str(tmp_path / "x"))
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as exc:
        c.get_registered_model("nosuch")
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    missing = tmp_path / "no-hub-here"
    mlflow_env(f"sentenialx://{missing}")
    with pytest.raises(MlflowException, match="is not a hub folder"):
        MlflowClient().get_registered_model("distill")
    assert not os.path.exists(missing)  # a mistyped path never becomes an empty hub


def test_a_revoked_version_is_listed_but_its_files_are_refused(
        sample_hub: Hub, mlflow_env: Callable[[str], None], tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    sample_hub.revoke("distill@1.0.0", reason="leaked test data")
    mlflow_env(f"sentenialx://{sample_hub.root}")
    assert MlflowClient().get_model_version("distill", "1").tags["sentenialx.revoked"] == \
        "leaked test data"
    dst = tmp_path / "out"
    with pytest.raises(MlflowException, match="is revoked") as exc:
        mlflow.artifacts.download_artifacts("models:/distill/1", dst_path=str(dst))
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert tree(dst) == {}
