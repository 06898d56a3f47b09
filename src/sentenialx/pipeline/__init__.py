"""Sentenial-X's inference side: a threat classifier built from hub refs only.

``build_inference_pipeline()`` resolves refs (``encoder``, ``distill@production``,
optionally a LoRA adapter), loads verified bytes through the hub, and with
``follow=True`` notices a new registration or an alias move between calls and
swaps to the new version atomically, keeping the old one if the new one fails
verification or loading.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from sentenialx.hub.hub import Hub
    from sentenialx.hub.values import VersionInfo

log = logging.getLogger("sentenialx.pipeline")


@dataclass(frozen=True, slots=True)
class Prediction:
    """The classifier's verdict on one text."""

    text: str
    label: str
    score: float
    is_threat: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"text": self.text, "label": self.label, "score": self.score,
                "is_threat": self.is_threat}


@dataclass(slots=True)
class _Loaded:
    """Everything one set of versions needs to predict; replaced whole, never mutated."""

    encoder: VersionInfo
    classifier: VersionInfo
    lora: VersionInfo | None
    session: Any
    labels: list[str]

    def versions(self) -> dict[str, str | None]:
        return {"encoder": self.encoder.ref, "classifier": self.classifier.ref,
                "lora": self.lora.ref if self.lora else None}


class ThreatClassifier:
    """Predicts a label and a score per text; see :func:`build_inference_pipeline`."""

    def __init__(self, hub: Hub, *, encoder: str, classifier: str, lora: str | None,
                 follow: bool, trust: str | None = None, min_check_interval: float = 0.0,
                 state_guard: Any = None) -> None:
        self.hub = hub
        self.refs = {"encoder": encoder, "classifier": classifier, "lora": lora}
        self.follow = follow
        self.trust = trust
        self.min_check_interval = min_check_interval
        self.state_guard = state_guard
        self.last_error: str | None = None
        self.swaps = 0
        self._lock = threading.Lock()
        self._last_check = 0.0
        self._seen_gen = hub.generation()
        self._check_state()
        self._state = self._load()

    # -- public -------------------------------------------------------------------------
    @property
    def versions(self) -> dict[str, str | None]:
        """The versions serving right now."""
        return self._state.versions()

    def predict(self, texts: list[str]) -> list[Prediction]:
        """Classify texts; with ``follow``, first pick up a new release if there is one."""
        if self.follow:
            self.refresh()
        state = self._state  # one consistent set of versions for the whole call
        probs = self._probs(state, texts)
        out = []
        for t, p in zip(texts, probs, strict=True):
            i = int(p.argmax())
            label = state.labels[i]
            out.append(Prediction(t, label, float(p[i]), label != "benign"))
        return out

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, columns in :attr:`labels` order."""
        if self.follow:
            self.refresh()
        return self._probs(self._state, texts)

    @property
    def labels(self) -> list[str]:
        """Class names in output order."""
        return list(self._state.labels)

    def refresh(self) -> bool:
        """Swap to new versions if the refs now resolve elsewhere; True if swapped.

        Cheap when nothing changed: one read of the hub's generation counter.
        """
        now = time.monotonic()
        if now - self._last_check < self.min_check_interval:
            return False
        self._last_check = now
        try:
            gen = self.hub.generation()
        except Exception as exc:  # noqa: BLE001 - offline: keep serving what was verified
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("cannot check the hub for new releases (%s); serving %s",
                        self.last_error, self._state.versions())
            return False
        if gen == self._seen_gen:
            return False
        with self._lock:
            if gen == self._seen_gen:
                return False
            self._seen_gen = gen
            try:
                self._check_state()
                wanted = self._resolve_all()
                cur = self._state
                if (wanted["encoder"].digest, wanted["classifier"].digest,
                        wanted["lora"].digest if wanted["lora"] else None) == (
                        cur.encoder.digest, cur.classifier.digest,
                        cur.lora.digest if cur.lora else None):
                    # The refs name what is served again (e.g. an alias moved back off a
                    # broken release), so no failure is pending: last_error is cleared.
                    self.last_error = None
                    self._recheck_trust(cur)
                    return False
                new = self._load(wanted)
            except Exception as exc:  # noqa: BLE001 - keep serving; the reason is logged
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("keeping %s: new release not loaded: %s",
                            self._state.versions(), self.last_error)
                return False
            old = self._state.versions()
            self._state = new
            self.swaps += 1
            self.last_error = None
            log.info("switched %s -> %s", old, new.versions())
            return True

    # -- internals ----------------------------------------------------------------------
    def _recheck_trust(self, cur: _Loaded) -> None:
        """The hub changed but our versions did not: a key revocation may have untrusted them.

        The detector keeps running (blinding it is what an attacker wants), but the
        failure is logged as an error and kept in ``last_error`` for health checks.
        """
        if self.hub.is_served:
            return  # a served hub's policy is applied by its server
        for info in (cur.encoder, cur.classifier, cur.lora):
            if info is None:
                continue
            try:
                self.hub.check_trust(info, mode=self.trust)
            except Exception as exc:  # noqa: BLE001 - reported, serving continues
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("serving %s, which the trust policy no longer accepts: %s",
                          info.ref, self.last_error)

    def _check_state(self) -> None:
        if self.state_guard is not None:
            self.state_guard.check(self.hub)

    def _resolve_all(self) -> dict[str, Any]:
        return {
            "encoder": self.hub.resolve(self.refs["encoder"] or "encoder"),
            "classifier": self.hub.resolve(self.refs["classifier"] or "distill"),
            "lora": self.hub.resolve(self.refs["lora"]) if self.refs["lora"] else None,
        }

    def _load(self, wanted: dict[str, Any] | None = None) -> _Loaded:
        from sentenialx.pipeline.predict import open_session, session_labels_and_spec

        wanted = wanted or self._resolve_all()
        enc, clf, lora = wanted["encoder"], wanted["classifier"], wanted["lora"]
        # The encoder's weights are folded into the student's graph; its version is still
        # verified (and trust-checked) so a tampered encoder release is noticed, and the
        # student's lineage must name it.
        self.hub.read_files(enc.ref, roles=("weights",), **self._trust_kw())
        parents = {(p.get("model"), p.get("version")) for p in clf.lineage.get("parents", [])}
        if parents and (enc.model, enc.version) not in parents:
            log.warning("%s was distilled with encoder %s, not %s", clf.ref,
                        sorted(f"{m}@{v}" for m, v in parents if m == enc.model) or "-", enc.ref)
        model_bytes = self.hub.open_bytes(clf.ref, **self._trust_kw())
        if lora is not None:
            model_bytes = self._merge_lora(lora, model_bytes)
        session = open_session(model_bytes)
        # The featurizer settings travel inside the graph; predict_proba_onnx reads them.
        labels, _spec = session_labels_and_spec(session)
        return _Loaded(enc, clf, lora, session, labels)

    def _trust_kw(self) -> dict[str, Any]:
        """A local hub applies its trust policy (or our override); a served one its server's."""
        if not self.hub.is_served:
            return {"trust": self.trust}
        if self.hub.is_tuf:
            return {}  # every release is verified over TUF as it resolves
        if self.trust == "enforce":
            from sentenialx.hub.errors import SignatureError

            raise SignatureError("trust='enforce' needs a local hub (pull the version first)")
        return {}

    def _merge_lora(self, lora: VersionInfo, base: bytes) -> bytes:
        """Fold a verified adapter folder into the verified student graph (numpy + onnx, no torch)."""
        import json

        from sentenialx.hub.errors import InvalidInput
        from sentenialx.hub.loaders.safetensors import load_safetensors_numpy
        from sentenialx.pipeline.lora import AdapterConfig, merge_adapter_onnx

        files = self.hub.read_files(lora.ref, roles=("weights", "config"), **self._trust_kw())
        weights = [v for k, v in files.items() if k.endswith(".safetensors")]
        configs = [v for k, v in files.items() if k.endswith("adapter_config.json")]
        if len(weights) != 1 or len(configs) != 1:
            raise InvalidInput(f"{lora.ref} is not a LoRA adapter folder (adapter.safetensors +"
                               " adapter_config.json)")
        tensors = load_safetensors_numpy(weights[0], name=f"{lora.ref}:adapter.safetensors")
        config = AdapterConfig.from_dict(json.loads(configs[0]))
        return merge_adapter_onnx(base, tensors, config)

    def _probs(self, state: _Loaded, texts: list[str]) -> np.ndarray:
        import numpy as np

        from sentenialx.pipeline.predict import predict_proba_onnx

        if not texts:
            return np.zeros((0, len(state.labels)), dtype=np.float32)
        return predict_proba_onnx(state.session, texts)


def _labels(info: VersionInfo) -> list[str]:
    m = info.meta
    for cand in (m.get("labels"), (m.get("outputs") or {}).get("labels")
                 if isinstance(m.get("outputs"), dict) else None):
        if isinstance(cand, list) and cand:
            return [str(c) for c in cand]
    return []


def build_inference_pipeline(hub: Hub | str | None = None, *, encoder: str = "encoder",
                             classifier: str = "distill", lora: str | None = None,
                             follow: bool = True, trust: str | None = None,
                             state_guard: Any = None, tuf_root: Any = None,
                             min_check_interval: float = 0.0) -> ThreatClassifier:
    """A threat classifier loaded from hub refs, following new releases if ``follow``.

    Args:
        hub: the hub, or where to open it (default :meth:`Hub.open`).
        tuf_root: a trusted TUF ``root.json`` (path or bytes): read the served hub
            ``hub`` over TUF; a refused refresh keeps the current model (``last_error``).
        encoder: ref of the text encoder (its featurizer settings and verified files).
        classifier: ref of the ONNX student, e.g. ``distill@production``.
        lora: ref of a LoRA adapter applied to the student's output layer, or None.
        follow: check cheaply before each call for a new registration or alias move.
        trust: override the trust policy's mode (``enforce``, ``warn``, ``off``).
        state_guard: checks the hub's signed state (rollback/freeze protection).
        min_check_interval: with ``follow``, check at most once per this many seconds
            (a served or TUF hub costs a round trip per check; 0 checks every call).

    Raises:
        NotFound: a ref does not resolve.
        IntegrityError: stored bytes do not match their manifest.
        SignatureError: the trust policy refuses the version.
        MissingDependency: onnxruntime is not installed.
    """
    if hub is None or isinstance(hub, str) or tuf_root is not None:
        from sentenialx.hub.hub import Hub

        if tuf_root is not None and not isinstance(hub, str):
            from sentenialx.hub.errors import InvalidInput

            raise InvalidInput("tuf_root= needs hub='http://…' (the served hub's URL)")
        opened: Hub = Hub.open(hub, tuf_root=tuf_root)
        hub = opened
    assert not isinstance(hub, str)
    return ThreatClassifier(hub, encoder=encoder, classifier=classifier, lora=lora,
                            follow=follow, trust=trust, state_guard=state_guard,
                            min_check_interval=min_check_interval)


__all__ = ["Prediction", "ThreatClassifier", "build_inference_pipeline"]
