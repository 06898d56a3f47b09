"""MLflow plugin: a hub as an MLflow model registry, its versions as ``models:/`` artifacts.

Installed with ``pip install 'sentenialx[mlflow]'``; MLflow finds it by the entry points
in pyproject.toml. Registry URIs:

- ``sentenialx:///path/to/hub``: a hub folder (with its hub.toml, if any);
- ``sentenialx+http://host:port`` (or ``+https``): a served hub, token from
  ``$SENTENIALX_TOKEN``, files through the client's verified cache.

``mlflow.set_registry_uri(uri)`` then ``mlflow.artifacts.download_artifacts(
"models:/distill@staging")`` (or ``models:/distill/3``, ``models:/distill/latest``)
downloads the version's files, each read through the Hub's read path (trust policy,
bytes hashed against the manifest) before it is written to the destination.

MLflow's integer versions are the order in which versions were registered in the hub
(the ``register`` events of the model's history), so a number never changes and a
deleted version's number is never reused; the hub's semver is the ``sentenialx.version``
tag. The registry is read-only through MLflow: register and move aliases with the hub.

This package is a front end: it calls the Hub facade only (import-linter contracts).
"""

from __future__ import annotations

from typing import Any


def registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    """The ``mlflow.model_registry_store`` entry point: a registry store for ``store_uri``.

    Raises:
        mlflow.exceptions.MlflowException: the URI does not name a hub.
    """
    from sentenialx.mlflow_plugin._store import HubRegistryStore

    return HubRegistryStore(store_uri, tracking_uri)


def artifact_repository(artifact_uri: str, tracking_uri: str | None = None,
                        registry_uri: str | None = None) -> Any:
    """The ``mlflow.artifact_repository`` entry point: one hub version's files as artifacts.

    Raises:
        mlflow.exceptions.MlflowException: the URI does not name a hub version.
    """
    from sentenialx.mlflow_plugin._artifacts import HubArtifactRepository

    return HubArtifactRepository(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)


__all__ = ["artifact_repository", "registry_store"]
