"""A hub as an MLflow model registry store (read-only).

Every answer is built from Hub read verbs (``versions``, ``aliases``, ``events``,
``models``); nothing here resolves, verifies or authorises on its own. MLflow version
numbers are the order of the model's ``register`` events: event *n* made version *n*.
The history is append-only, so a number is stable forever, and a version deleted (or
deleted and registered again, which is a new registration) leaves its number unused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from mlflow.entities.model_registry import (
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelAlias,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry import (
    SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD,
    SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD,
)
from mlflow.store.model_registry.abstract_store import AbstractStore
from mlflow.utils.search_utils import SearchModelUtils, SearchModelVersionUtils, SearchUtils

from sentenialx.hub.errors import NotFound
from sentenialx.hub.values import VersionInfo
from sentenialx.mlflow_plugin._location import (
    invalid,
    open_hub,
    parse_registry_uri,
    read_only,
    translated,
)

TAG = "sentenialx."
"""Prefix of the tags the plugin adds to every model version."""
STAGE_NONE = "None"


@dataclass(frozen=True, slots=True)
class _Numbered:
    """A model's versions under their MLflow numbers, and its aliases."""

    by_number: dict[int, VersionInfo]
    aliases: dict[str, str]  # alias -> semver

    def number_of(self, version: str) -> int | None:
        for n, info in self.by_number.items():
            if info.version == version:
                return n
        return None


class HubRegistryStore(AbstractStore):  # type: ignore[misc]
    """The MLflow registry store of ``sentenialx:///path`` and ``sentenialx+http(s)://host:port``."""

    def __init__(self, store_uri: str, tracking_uri: str | None = None) -> None:
        super().__init__(store_uri, tracking_uri)
        self.location = parse_registry_uri(store_uri)
        self.hub = open_hub(self.location)

    # -- numbering ----------------------------------------------------------------------
    def _numbered(self, name: str) -> _Numbered:
        with translated():
            infos = {v.version: v for v in self.hub.versions(name)}
            registered = [e.version for e in self.hub.events(model=name) if e.kind == "register"]
            aliases = {a.alias: a.version for a in self.hub.aliases(name)}
        last = {v: n for n, v in enumerate(registered, 1)}
        # Event n names the version it made; it is that version only if no later
        # registration re-used the semver (after a delete) and the version still exists.
        by_number = {n: infos[v] for n, v in enumerate(registered, 1)
                     if last[v] == n and v in infos}
        return _Numbered(by_number, aliases)

    def _version(self, name: str, version: Any) -> tuple[int, VersionInfo, _Numbered]:
        try:
            number = int(str(version))
        except ValueError:
            invalid(f"model version {version!r} is not an integer (MLflow numbers versions 1, 2,"
                    " …; the hub's semver is the tag sentenialx.version)")
        numbered = self._numbered(name)
        info = numbered.by_number.get(number)
        if info is None:
            _missing(f"Model Version (name={name}, version={number}) not found: {name} has"
                     f" versions {sorted(numbered.by_number) or 'none'} (a deleted version keeps"
                     " its number)")
        return number, info, numbered

    # -- entities -----------------------------------------------------------------------
    def _model_version(self, number: int, info: VersionInfo, numbered: _Numbered) -> ModelVersion:
        raw = info.meta.get("mlflow")
        mlflow_meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
        tags = {str(k): str(v) for k, v in (mlflow_meta.get("tags") or {}).items()
                if not str(k).startswith(TAG)}
        tags.update({f"{TAG}version": info.version, f"{TAG}ref": info.ref,
                     f"{TAG}digest": f"sha256:{info.digest}", f"{TAG}layout": info.layout})
        if info.revoked:
            tags[f"{TAG}revoked"] = info.revoke_reason or "revoked"
        ts = _millis(info.created_at)
        description = info.meta.get("description")
        return ModelVersion(
            name=info.model, version=number,  # type: ignore[arg-type]  # stores give ints
            creation_timestamp=ts, last_updated_timestamp=ts,
            description=description if isinstance(description, str) else None,
            user_id=info.created_by, current_stage=STAGE_NONE,
            source=self.location.artifact_uri(info.model, info.version, info.digest),
            run_id=_str_or_none(mlflow_meta.get("run_id")),
            tags=[ModelVersionTag(k, v) for k, v in sorted(tags.items())],
            aliases=sorted(a for a, v in numbered.aliases.items() if v == info.version))

    def _latest(self, name: str, numbered: _Numbered) -> tuple[int, VersionInfo] | None:
        with translated():
            try:
                info = self.hub.resolve(name)  # the hub's latest: highest semver, not revoked
            except NotFound:
                return None
        n = numbered.number_of(info.version)
        return None if n is None else (n, info)

    def _registered_model(self, name: str) -> RegisteredModel:
        numbered = self._numbered(name)
        stamps = [_millis(i.created_at) for i in numbered.by_number.values()]
        latest = self._latest(name, numbered) if numbered.by_number else None
        return RegisteredModel(
            name=name, creation_timestamp=min(stamps, default=None),
            last_updated_timestamp=max(stamps, default=None),
            latest_versions=[self._model_version(*latest, numbered)] if latest else [],
            aliases=[RegisteredModelAlias(a, str(n)) for a, v in sorted(numbered.aliases.items())
                     if (n := numbered.number_of(v)) is not None])

    # -- reads --------------------------------------------------------------------------
    def get_registered_model(self, name: str) -> RegisteredModel:
        """The model ``name`` with its latest version and aliases."""
        return self._registered_model(name)

    def search_registered_models(self, filter_string: str | None = None, max_results: int | None = None,
                                 order_by: list[str] | None = None, page_token: str | None = None
                                 ) -> PagedList:
        """Every model of the hub, filtered, sorted and paged as MLflow's file store does."""
        max_results = _check_max(max_results, SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD)
        with translated():
            names = [str(m["model"]) for m in self.hub.models()]
        models = SearchModelUtils.filter([self._registered_model(n) for n in names], filter_string)
        return _page(SearchModelUtils.sort(models, order_by), page_token, max_results)

    def get_latest_versions(self, name: str, stages: list[str] | None = None) -> list[ModelVersion]:
        """Stage ``None`` (or no stages): the hub's latest version; any other stage: the version
        of the alias with that name in lower case (``Production`` -> ``production``)."""
        numbered = self._numbered(name)
        out: dict[int, ModelVersion] = {}
        for stage in stages or [STAGE_NONE]:
            if stage.lower() == STAGE_NONE.lower():
                latest = self._latest(name, numbered)
                if latest:
                    out[latest[0]] = self._model_version(*latest, numbered)
                continue
            version = numbered.aliases.get(stage.lower())
            n = numbered.number_of(version) if version is not None else None
            if n is not None:
                out[n] = self._model_version(n, numbered.by_number[n], numbered)
        return [out[n] for n in sorted(out)]

    def get_model_version(self, name: str, version: Any) -> ModelVersion:
        """Version number ``version`` of ``name`` (registration order)."""
        return self._model_version(*self._version(name, version))

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version the hub alias ``alias`` of ``name`` points at."""
        numbered = self._numbered(name)
        version = numbered.aliases.get(alias)
        n = numbered.number_of(version) if version is not None else None
        if n is None:
            _missing(f"Registered model alias {alias} not found on {name}; aliases:"
                     f" {', '.join(sorted(numbered.aliases)) or 'none'}")
        return self._model_version(n, numbered.by_number[n], numbered)

    def get_model_version_download_uri(self, name: str, version: Any) -> str:
        """The artifact URI of version number ``version``: the hub, model, semver and digest."""
        _n, info, _ = self._version(name, version)
        return self.location.artifact_uri(info.model, info.version, info.digest)

    def search_model_versions(self, filter_string: str | None = None, max_results: int | None = None,
                              order_by: list[str] | None = None, page_token: str | None = None
                              ) -> PagedList:
        """Every version of every model (or of the models a ``name = '…'`` clause names)."""
        max_results = _check_max(max_results, SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD)
        names = [c["value"] for c in SearchModelVersionUtils.parse_search_filter(filter_string)
                 if c.get("type") == "attribute" and c.get("key") == "name"
                 and c.get("comparator") == "="]
        if not names:
            with translated():
                names = [str(m["model"]) for m in self.hub.models()]
        versions = []
        for name in sorted(set(names)):
            try:
                numbered = self._numbered(name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    continue
                raise
            versions += [self._model_version(n, info, numbered)
                         for n, info in sorted(numbered.by_number.items())]
        found = SearchModelVersionUtils.filter(versions, filter_string)
        ordered = SearchModelVersionUtils.sort(
            found, order_by or ["last_updated_timestamp DESC", "name ASC", "version_number DESC"])
        return _page(ordered, page_token, max_results)

    def get_model_version_stages(self, name: str, version: Any) -> list[str]:
        """The stages MLflow knows (they map to aliases here, see :meth:`get_latest_versions`)."""
        from mlflow.entities.model_registry.model_version_stages import ALL_STAGES

        self._version(name, version)
        return list(ALL_STAGES)

    # -- writes: the hub's own verbs do them (gates, signatures, history) -------------------
    def create_registered_model(self, name: Any, tags: Any = None, description: Any = None,
                                deployment_job_id: Any = None) -> NoReturn:
        """Refused: read-only."""
        read_only("create_registered_model")

    def update_registered_model(self, name: Any, description: Any, deployment_job_id: Any = None
                                ) -> NoReturn:
        """Refused: read-only."""
        read_only("update_registered_model")

    def rename_registered_model(self, name: Any, new_name: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("rename_registered_model")

    def delete_registered_model(self, name: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("delete_registered_model")

    def set_registered_model_tag(self, name: Any, tag: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("set_registered_model_tag")

    def delete_registered_model_tag(self, name: Any, key: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("delete_registered_model_tag")

    def create_model_version(self, name: Any, source: Any, run_id: Any = None, tags: Any = None,
                             run_link: Any = None, description: Any = None,
                             local_model_path: Any = None, model_id: Any = None) -> NoReturn:
        """Refused: read-only."""
        read_only("create_model_version")

    def update_model_version(self, name: Any, version: Any, description: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("update_model_version")

    def transition_model_version_stage(self, name: Any, version: Any, stage: Any,
                                       archive_existing_versions: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("transition_model_version_stage")

    def delete_model_version(self, name: Any, version: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("delete_model_version")

    def set_model_version_tag(self, name: Any, version: Any, tag: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("set_model_version_tag")

    def delete_model_version_tag(self, name: Any, version: Any, key: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("delete_model_version_tag")

    def set_registered_model_alias(self, name: Any, alias: Any, version: Any) -> NoReturn:
        """Refused: read-only (a gated alias moves only through its promotion gates)."""
        read_only("set_registered_model_alias")

    def delete_registered_model_alias(self, name: Any, alias: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("delete_registered_model_alias")

    def copy_model_version(self, src_mv: Any, dst_name: Any) -> NoReturn:
        """Refused: read-only."""
        read_only("copy_model_version")


def _missing(message: str) -> NoReturn:
    raise MlflowException(message, error_code=RESOURCE_DOES_NOT_EXIST)


def _millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _check_max(max_results: int | None, threshold: int) -> int:
    if max_results is None:
        return threshold
    if not isinstance(max_results, int) or isinstance(max_results, bool) or \
            not 1 <= max_results <= threshold:
        invalid(f"max_results must be an integer from 1 to {threshold}, got {max_results!r}")
    return max_results


def _page(items: list[Any], page_token: str | None, max_results: int) -> PagedList:
    start = SearchUtils.parse_start_offset_from_page_token(page_token)
    end = start + max_results
    return PagedList(items[start:end], SearchUtils.create_page_token(end) if end < len(items)
                     else None)


__all__ = ["HubRegistryStore"]
