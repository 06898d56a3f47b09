"""Registering a version by streaming upload.

The request is ``multipart/form-data``: first a ``spec`` part (JSON, see
:class:`UploadSpec`) that declares every file's size and sha256, then one
``blob`` part per file content the server does not already hold, named by its
sha256 (``filename=<sha256>``). A blob the hub already stores (same sha256 and
size, in a model the token may read) need not be sent: that is the dedup.

Order of operations (DESIGN.md, "Order of operations that keeps data safe"):
each blob is written to a temporary file in a staging folder inside the hub root
(``.tmp-upload-*``, which ``gc`` removes if we die), hashed while it is received
and checked against its declared size and sha256 as soon as it ends; only when
the whole body has arrived and matched does :meth:`Hub.register` run, which
stores the staged files with its own crash-safe order. Any failure (a mismatch,
the size limit, a client that goes away) removes the staging folder, so nothing
becomes visible unless everything arrived.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from sentenialx.hub import _staging, bounds
from sentenialx.hub._tokens import Token
from sentenialx.hub.errors import IntegrityError, InvalidInput, PermissionDenied, TooLarge
from sentenialx.hub.hub import Hub, _role_in_folder
from sentenialx.hub.manifest import ROLES, FileEntry, Manifest
from sentenialx.hub.refs import Version, parse_ref, validate_name, validate_relpath
from sentenialx.hub.values import VersionInfo

SPEC_MAX = 4 * 1024 * 1024
"""The spec part is JSON metadata, not bytes of a model: keep it small."""
MAX_FILES = 10000
MAX_ATTACHMENTS = 100
MAX_PARENTS = 100
SPEC_DEPTH = bounds.MAX_META_DEPTH + 2
"""The spec's own nesting (spec -> metadata) on top of the metadata bound."""
_UNKNOWN_VERSION_MARGIN = 40
"""Bytes a bumped (not yet known) version may add to a stored name: ``_v`` and three numbers."""
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SPEC_KEYS = {"layout", "name", "version", "bump", "metadata", "parents", "data_digest", "alias",
              "digest", "files", "attachments"}


@dataclass(frozen=True, slots=True)
class Declared:
    """One declared file: where it goes, and the size and sha256 its bytes must have."""

    path: str
    size: int
    sha256: str
    role: str = ""


@dataclass(frozen=True, slots=True)
class UploadSpec:
    """What a client asks to register (the ``spec`` part).

    ``files`` are the version's main content: one file (``layout`` ``file``) or the
    files of a folder by relative path (``dir``). ``attachments`` are the log,
    chart, report, config or other files kept beside it, by name and role.
    ``digest``, with an explicit ``version``, is the version digest the client
    expects; a mismatch is refused before anything is stored.
    """

    layout: str
    files: tuple[Declared, ...]
    attachments: tuple[Declared, ...] = ()
    name: str | None = None
    version: str | None = None
    bump: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    parents: tuple[str, ...] = ()
    data_digest: str | None = None
    alias: str | None = None
    digest: str | None = None

    def all_files(self) -> tuple[Declared, ...]:
        """Main files and attachments."""
        return self.files + self.attachments

    def base_name(self) -> str:
        """The file stem the version's files are stored under (before ``_v<version>``)."""
        if self.name:
            return Hub._stem_base(self.name)
        return Hub._stem_base(Path(self.files[0].path).stem)

    def predicted_manifest(self, version: str) -> Manifest:
        """The manifest :meth:`Hub.register` will write for these files at ``version``."""
        stem = f"{self.base_name()}_v{version}"
        entries: list[FileEntry] = []
        if self.layout == "file":
            f = self.files[0]
            entries.append(FileEntry(f"{stem}{Path(f.path).suffix.lower()}", f.size, f.sha256,
                                     "weights"))
        else:
            entries += [FileEntry(f"{stem}/{f.path}", f.size, f.sha256, _role_in_folder(f.path))
                        for f in self.files]
        entries += [FileEntry(f"{stem}_{a.path}", a.size, a.sha256, a.role)
                    for a in self.attachments]
        return Manifest(tuple(entries))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a client sends."""
        return {
            "layout": self.layout, "name": self.name, "version": self.version, "bump": self.bump,
            "metadata": self.metadata, "parents": list(self.parents),
            "data_digest": self.data_digest, "alias": self.alias, "digest": self.digest,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
            "attachments": [{"role": a.role, "name": a.path, "size": a.size, "sha256": a.sha256}
                            for a in self.attachments],
        }


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        raise InvalidInput(f"spec: {key!r} must be a string or null")
    return v or None


def _declared(item: Any, where: str) -> tuple[int, str]:
    if not isinstance(item, dict):
        raise InvalidInput(f"spec: {where} must be an object")
    size, sha = item.get("size"), item.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"spec: {where}: 'size' must be a non-negative integer")
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise InvalidInput(f"spec: {where}: 'sha256' must be 64 lowercase hex digits")
    return size, sha


def parse_spec(raw: bytes) -> UploadSpec:
    """Check and parse the ``spec`` part.

    Raises:
        InvalidInput: not JSON, unknown keys, wrong types, bad names or paths.
    """
    try:
        d = bounds.parse_json_bounded(raw, max_bytes=SPEC_MAX, max_depth=SPEC_DEPTH)
    except TooLarge as exc:
        raise TooLarge(f"spec: {exc}") from None
    except InvalidInput as exc:
        raise InvalidInput(f"spec: {exc}") from None
    if not isinstance(d, dict):
        raise InvalidInput("spec must be a JSON object")
    unknown = set(d) - _SPEC_KEYS
    if unknown:
        raise InvalidInput(f"spec has unknown keys: {', '.join(sorted(unknown))}")
    layout = d.get("layout", "file")
    if layout not in ("file", "dir"):
        raise InvalidInput("spec: 'layout' must be 'file' or 'dir'")
    raw_files, raw_att = d.get("files"), d.get("attachments", [])
    if not isinstance(raw_files, list) or not raw_files:
        raise InvalidInput("spec: 'files' must be a non-empty list")
    if not isinstance(raw_att, list):
        raise InvalidInput("spec: 'attachments' must be a list")
    if len(raw_files) > MAX_FILES or len(raw_att) > MAX_ATTACHMENTS:
        raise InvalidInput(f"spec: at most {MAX_FILES} files and {MAX_ATTACHMENTS} attachments")
    files = []
    for i, item in enumerate(raw_files):
        size, sha = _declared(item, f"files[{i}]")
        path = item.get("path")
        if not isinstance(path, str):
            raise InvalidInput(f"spec: files[{i}]: 'path' must be a string")
        validate_relpath(path)
        files.append(Declared(path, size, sha))
    if layout == "file" and (len(files) != 1 or "/" in files[0].path):
        raise InvalidInput("spec: layout 'file' takes exactly one file, named without '/'")
    if len({f.path for f in files}) != len(files):
        raise InvalidInput("spec: a file path is listed twice")
    atts = []
    for i, item in enumerate(raw_att):
        size, sha = _declared(item, f"attachments[{i}]")
        name, role = item.get("name"), item.get("role")
        if not isinstance(name, str):
            raise InvalidInput(f"spec: attachments[{i}]: 'name' must be a string")
        validate_name(name, what="attachment")
        if role not in ROLES or role == "weights":
            raise InvalidInput(f"spec: attachments[{i}]: 'role' must be one of"
                               f" {', '.join(r for r in ROLES if r != 'weights')}")
        atts.append(Declared(name, size, sha, role))
    if len({a.path for a in atts}) != len(atts):
        raise InvalidInput("spec: an attachment name is listed twice")
    metadata = d.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidInput("spec: 'metadata' must be a JSON object")
    metadata = bounds.check_metadata(metadata)
    parents = d.get("parents", [])
    if (not isinstance(parents, list) or len(parents) > MAX_PARENTS
            or not all(isinstance(p, str) and len(p) <= 300 for p in parents)):
        raise InvalidInput(f"spec: 'parents' must be a list of at most {MAX_PARENTS} refs"
                           " ([ROLE=]REF)")
    version = _opt_str(d, "version")
    if version is not None:
        version = str(Version.parse(bounds.check_version_text(version)))
    digest = _opt_str(d, "digest")
    if digest is not None and not _HEX64.match(digest):
        raise InvalidInput("spec: 'digest' must be 64 lowercase hex digits")
    name = _opt_str(d, "name")
    if layout == "dir" and not name:
        raise InvalidInput("spec: layout 'dir' needs a 'name' (the folder's stored name)")
    spec = UploadSpec(layout=layout, files=tuple(files), attachments=tuple(atts), name=name,
                      version=version, bump=_opt_str(d, "bump"), metadata=metadata,
                      parents=tuple(parents), data_digest=_opt_str(d, "data_digest"),
                      alias=_opt_str(d, "alias"), digest=digest)
    _check_stored_names(spec)
    return spec


def _check_stored_names(spec: UploadSpec) -> None:
    """Every name the version's files will be stored under fits the filesystem and no sidecar.

    Raises:
        InvalidName: a name that cannot be stored, a component or path too long, a path
            that is both a file and a folder, or a name the hub keeps for a sidecar.
    """
    version = spec.version or "0.0.0"
    stored = [f.path for f in spec.predicted_manifest(version).files]
    bounds.check_relpaths([f.path for f in spec.files])
    bounds.check_relpaths(stored, margin=0 if spec.version else _UNKNOWN_VERSION_MARGIN)
    bounds.check_sidecars(stored, stem=f"{spec.base_name()}_v{version}")


def check_parents(spec: UploadSpec, token: Token) -> None:
    """Refuse a parent in a model ``token`` may not see, the same way whether it exists or not.

    Raises:
        InvalidRef: a parent that does not parse.
        PermissionDenied: a parent outside the token's model limits.
    """
    for p in spec.parents:
        _label, sep, ref = p.partition("=")
        name = parse_ref(ref if sep else p).name
        if not token.may_see(name):
            raise PermissionDenied(f"spec: parent {p[:100]!r} is not visible to token"
                                   f" {token.name!r}; nothing was stored")


def find_stored(hub: Hub, sha256: str, size: int, token: Token) -> str | None:
    """The store key of a file with these bytes in a model ``token`` may read, or None."""
    return _staging.find_stored(hub, sha256, size, visible=token.may_see)


class UploadSink:
    """Consumes the multipart body chunk by chunk (in a worker thread).

    Every blob is hashed while it is written and checked the moment its part ends;
    a mismatch raises at once, so a bad upload is refused without reading the rest.
    """

    def __init__(self, staging: Path, boundary: bytes) -> None:
        self.staging = staging
        self.blob_dir = staging / "blobs"
        self.blob_dir.mkdir()
        self.spec: UploadSpec | None = None
        self.received: dict[str, Path] = {}
        self._declared: dict[str, Declared] = {}
        self._spec_buf = bytearray()
        self._part: str | None = None
        self._headers: dict[bytes, bytes] = {}
        self._hname = b""
        self._hvalue = b""
        self._file: IO[bytes] | None = None
        self._hash: Any = None
        self._size = 0
        self._sha = ""
        self._ended = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._on_part_begin,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_end": self._on_end,
        })

    # -- parser callbacks -------------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._headers = {}
        self._part = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._hname.lower()] = self._hvalue
        self._hname, self._hvalue = b"", b""

    def _on_headers_finished(self) -> None:
        _disp, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = opts.get(b"name", b"").decode("latin-1")
        if name == "spec":
            if self.spec is not None or self._spec_buf:
                raise InvalidInput("upload: the 'spec' part is given twice")
            self._part = "spec"
            return
        if name != "blob":
            raise InvalidInput(f"upload: unknown part {name!r}; send 'spec' first, then 'blob'"
                               " parts named by their sha256")
        if self.spec is None:
            raise InvalidInput("upload: the 'spec' part must come before any 'blob' part")
        sha = opts.get(b"filename", b"").decode("latin-1").lower()
        if sha not in self._declared:
            raise InvalidInput(f"upload: blob {sha[:80]!r} is not the sha256 of any declared file")
        if sha in self.received:
            raise InvalidInput(f"upload: blob {sha[:12]}… is sent twice")
        path = self.blob_dir / sha
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._size = 0
        self._sha = sha
        self._part = "blob"

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "spec":
            if len(self._spec_buf) + (end - start) > SPEC_MAX:
                raise TooLarge(f"upload: the spec part is larger than {SPEC_MAX} bytes")
            self._spec_buf += data[start:end]
        elif self._part == "blob" and self._file is not None:
            chunk = data[start:end]
            self._size += len(chunk)
            want = self._declared[self._sha]
            if self._size > want.size:
                raise IntegrityError(
                    f"upload: {want.path}: more bytes than the declared {want.size};"
                    " nothing was stored", path=want.path, expected=want.sha256)
            self._hash.update(chunk)
            self._file.write(chunk)

    def _on_part_end(self) -> None:
        if self._part == "spec":
            self.spec = parse_spec(bytes(self._spec_buf))
            self._declared = {f.sha256: f for f in self.spec.all_files()}
        elif self._part == "blob" and self._file is not None:
            self._file.close()
            self._file = None
            want = self._declared[self._sha]
            actual = self._hash.hexdigest()
            if self._size != want.size or actual != want.sha256:
                raise IntegrityError(
                    f"upload: {want.path}: got {self._size} bytes with sha256 {actual[:12]}…,"
                    f" declared {want.size} bytes with sha256 {want.sha256[:12]}…;"
                    " nothing was stored", path=want.path, expected=want.sha256, actual=actual)
            self.received[self._sha] = self.blob_dir / self._sha
        self._part = None

    def _on_end(self) -> None:
        self._ended = True

    # -- feeding ----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Feed body bytes.

        Raises:
            InvalidInput: the body is not the multipart we expect.
            IntegrityError: a blob does not match its declared size or sha256.
            TooLarge: the spec part is too large.
        """
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise InvalidInput(f"upload: malformed multipart body: {exc}") from None

    def finish(self) -> UploadSpec:
        """Check the body ended properly and return the spec.

        Raises:
            InvalidInput: the body ended early or had no spec.
        """
        try:
            self._parser.finalize()
        except MultipartParseError as exc:
            raise InvalidInput(f"upload: malformed multipart body: {exc}") from None
        if not self._ended:
            raise InvalidInput("upload: the multipart body ended before its closing boundary")
        if self.spec is None:
            raise InvalidInput("upload: no 'spec' part")
        return self.spec

    def close(self) -> None:
        """Close a blob left open by an error."""
        if self._file is not None:
            self._file.close()
            self._file = None


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary of a Content-Type header.

    Raises:
        InvalidInput: not ``multipart/form-data`` with a boundary.
    """
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise InvalidInput("upload: send multipart/form-data with a 'spec' part and 'blob' parts")
    if len(boundary) > 200:
        raise InvalidInput("upload: multipart boundary too long")
    return boundary


def new_staging(hub: Hub) -> Path:
    """A private staging folder inside the hub root (``gc`` removes it if we crash)."""
    return _staging.new_staging(hub)


def remove_staging(path: Path) -> None:
    """Remove a staging folder, read-only files included."""
    def onerror(func: Callable[..., Any], p: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            func(p)

    if path.exists():
        shutil.rmtree(path, onerror=onerror)


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def register_staged(hub: Hub, model: str, spec: UploadSpec, sink: UploadSink, *, token: Token,
                    idempotency_key: str | None = None) -> VersionInfo:
    """Lay the received (and already stored) blobs out as register expects, and register.

    ``idempotency_key`` (the ``Idempotency-Key`` header) goes to :meth:`Hub.register`:
    the staged inputs keep the names the spec gives, so a retried upload is the same
    request and gets the version the first attempt made.

    Raises:
        InvalidInput: a declared file was neither sent nor stored; a digest mismatch.
        IntegrityError: a stored blob used for dedup no longer matches its sha256.
        PermissionDenied: a parent outside the token's model limits.
        AlreadyExists, NotFound, Conflict, GateFailed: from :meth:`Hub.register`
            (Conflict too for a key used by another request).
    """
    check_parents(spec, token)
    if spec.digest is not None:
        if spec.version is None:
            raise InvalidInput("spec: 'digest' needs an explicit 'version'")
        predicted = spec.predicted_manifest(spec.version).digest
        if predicted != spec.digest:
            raise InvalidInput(f"spec: these files make version digest {predicted[:12]}…, not"
                               f" the declared {spec.digest[:12]}…; nothing was stored")
    blobs = dict(sink.received)
    for f in spec.all_files():
        if f.sha256 in blobs:
            continue
        key = find_stored(hub, f.sha256, f.size, token)
        if key is None:
            raise InvalidInput(f"upload: {f.path}: sha256 {f.sha256[:12]}… was not sent and is"
                               " not stored here; send it as a 'blob' part")
        dst = sink.blob_dir / f.sha256
        _staging.copy_stored(hub, key, dst, sha256=f.sha256, size=f.size)
        blobs[f.sha256] = dst
    inputs = sink.staging / "in"
    if spec.layout == "file":
        main = inputs / spec.files[0].path
        _place(blobs[spec.files[0].sha256], main)
    else:
        main = inputs / spec.base_name()
        for f in spec.files:
            _place(blobs[f.sha256], main / f.path)
    attachments: list[tuple[str, str | os.PathLike[str]]] = []
    for i, a in enumerate(spec.attachments):
        p = sink.staging / "att" / str(i) / a.path
        _place(blobs[a.sha256], p)
        attachments.append((a.role, p))
    # Staged files are private hardlinks inside the hub root, so register may link them
    # into place (it hashes what it links) instead of copying every byte again.
    link = _staging.store_is_local(hub)
    info = hub.register(model, main, version=spec.version, bump=spec.bump,
                        metadata=spec.metadata, parents=spec.parents,
                        data_digest=spec.data_digest, attachments=attachments, alias=spec.alias,
                        link=link, actor=token.actor, name=spec.base_name(),
                        idempotency_key=idempotency_key)
    return info


__all__ = ["UploadSink", "UploadSpec", "boundary_of", "check_parents", "find_stored",
           "new_staging",
           "parse_spec", "register_staged", "remove_staging"]
