"""Fixtures for the MLflow tests: real mlflow(-skinny), real hubs, the real server on loopback.

- ``mlflow_registry`` (session): an MLflow registry built with mlflow itself: a sqlite
  backend and local artifacts, two runs with metrics, params and a logged model folder,
  ``distill`` versions 1 and 2, aliases ``staging`` -> 2, ``champion`` and ``production``
  -> 1, tags;
  and ``lora`` (versions 1 and 2) for the failure tests. MLflow's client opens its
  tracking store (and migrates a new sqlite database, seconds) once per URI per
  process, so every test uses this one as the tracking URI.
- ``mlflow_env``: MLflow's registry and tracking URIs, restored after the test.
- ``sample_hub``: distill 1.0.0 (file + log), 1.1.0 (file, ``staging``), 2.0.0 (a folder
  laid out like an MLflow model, ``candidate``); unsigned, so no ``production``.
- ``serve(hub)``: the hub served by uvicorn on 127.0.0.1; ``SENTENIALX_TOKEN`` (a read
  token) and ``SENTENIALX_CACHE`` are set for the test.

Without mlflow or the plugin's entry points (``pip install -e '.[mlflow]'``) these tests
skip on a developer machine and fail when ``CI=true``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.hub import Hub


def _missing() -> str | None:
    if importlib.util.find_spec("mlflow") is None:
        return "mlflow is not installed (pip install 'sentenialx[mlflow]')"
    for group in ("mlflow.model_registry_store", "mlflow.artifact_repository"):
        names = {e.name for e in importlib.metadata.entry_points(group=group)}
        if not {"sentenialx", "sentenialx+http"} <= names:
            return (f"the sentenialx plugin is not registered in {group}; reinstall the package"
                    " (pip install -e '.[mlflow]') so MLflow finds its entry points")
    return None


@pytest.fixture(scope="session", autouse=True)
def _plugin_installed() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@dataclass
class MlflowRegistry:
    """The session's MLflow registry and what was put in it."""

    tracking_uri: str
    root: Path
    runs: dict[str, str] = field(default_factory=dict)  # "distill/1" -> run id
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # "distill/1" -> tree
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def _model_folder(path: Path, seed: int) -> dict[str, bytes]:
    rnd = random.Random(seed)
    files = {"MLmodel": f"artifact_path: model\nflavors: {{}}\nseed: {seed}\n".encode(),
             "model.onnx": rnd.randbytes(20_000 + seed),
             "config/tokenizer.json": f'{{"vocab": {seed}}}'.encode()}
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return files


@pytest.fixture(scope="session")
def mlflow_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowRegistry]:
    import mlflow
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    reg = MlflowRegistry(uri, root)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("hub-import", artifact_location=(root / "artifacts").as_uri())
    specs = [("distill", 1, {"accuracy": 0.91, "loss": 0.31}),
             ("distill", 2, {"accuracy": 0.94, "loss": 0.22}),
             ("lora", 1, {"accuracy": 0.80}), ("lora", 2, {"accuracy": 0.85})]
    for name, n, metrics in specs:
        folder = root / "inputs" / f"{name}-{n}"
        files = _model_folder(folder, seed=len(reg.files) + 1)
        with mlflow.start_run(experiment_id=exp) as run:
            for k, v in metrics.items():
                mlflow.log_metric(k, v)
            mlflow.log_param("temperature", 4 if name == "distill" else 2)
            mlflow.log_artifacts(str(folder), "model")
        mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
        assert int(mv.version) == n
        key = f"{name}/{n}"
        reg.runs[key], reg.files[key], reg.metrics[key] = run.info.run_id, files, metrics
        reg.sources[key] = mv.source
    client.set_registered_model_alias("distill", "staging", "2")
    client.set_registered_model_alias("distill", "champion", "1")
    client.set_registered_model_alias("distill", "production", "1")  # gated in a hub
    client.set_model_version_tag("distill", "2", "reviewed_by", "alice")
    client.set_registered_model_tag("distill", "team", "threat-intel")
    client.update_model_version("distill", "2", description="the distilled student")
    try:
        yield reg
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def mlflow_env(mlflow_registry: MlflowRegistry) -> Iterator[Callable[[str], None]]:
    """``set_registry(uri)``: MLflow's registry URI for this test (tracking stays the session's)."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils

    saved = registry_utils._registry_uri, os.environ.get("MLFLOW_REGISTRY_URI")
    mlflow.set_tracking_uri(mlflow_registry.tracking_uri)
    try:
        yield mlflow.set_registry_uri
    finally:
        registry_utils._registry_uri = saved[0]
        if saved[1] is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)
        else:
            os.environ["MLFLOW_REGISTRY_URI"] = saved[1]


@pytest.fixture
def sample_hub(tmp_path: Path) -> Iterator[Hub]:
    rnd = random.Random(11)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    hub = Hub(tmp_path / "hub")
    a = inputs / "threat_student.onnx"
    a.write_bytes(rnd.randbytes(30_000))
    log = inputs / "train_log.jsonl"
    log.write_text('{"step": 0, "loss": 2.0}\n{"step": 10, "loss": 1.1}\n')
    hub.register("distill", a, metadata={"metrics": {"accuracy": 0.9}}, attachments=[("log", log)])
    a.write_bytes(rnd.randbytes(31_000))
    hub.register("distill", a, bump="minor", metadata={"description": "second student"})
    hub.set_alias("distill@1.1.0", "staging")
    folder = inputs / "distill-folder"
    _model_folder(folder, seed=99)
    hub.register("distill", folder, bump="major")
    hub.set_alias("distill@2.0.0", "candidate")
    try:
        yield hub
    finally:
        hub.close()


class _LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def start(self) -> _LiveServer:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Hub], str]]:
    """``serve(hub) -> "127.0.0.1:PORT"``, with a read token and a private client cache set."""
    from sentenialx.hub.server import create_app

    servers: list[_LiveServer] = []

    def start(hub: Hub) -> str:
        secret, _ = hub.tokens.create("mlflow-reader", scope="read")
        monkeypatch.setenv("SENTENIALX_TOKEN", secret)
        monkeypatch.setenv("SENTENIALX_CACHE", str(tmp_path / "client-cache"))
        s = _LiveServer(create_app(hub)).start()
        servers.append(s)
        return f"127.0.0.1:{s.port}"

    try:
        yield start
    finally:
        for s in servers:
            s.stop()
