"""Static allowlist scanner for pickle-bearing weight files (``.pt``, ``.pth``, ``.bin``).

A pickle is a small program: while it is read it can import any global and call
it, so ``os.system`` in a checkpoint runs the moment the checkpoint is loaded.
This module decides whether a pickle may be handed to
``torch.load(weights_only=True)`` by walking its opcodes with
:func:`pickletools.genops`. Nothing is ever unpickled, imported or called.

It is a second, independent line of defence. The first is torch's own
weights-only unpickler, which has had bypasses (see
``/work/shared/notes/pickle-safety.md``); the scanner does not depend on torch,
on its version, or on globals that other code may have added with
``torch.serialization.add_safe_globals``.

The rules, each refused with :class:`~sentenialx.hub.errors.UnsafeArtifact`:

- Every ``GLOBAL``, ``STACK_GLOBAL`` and ``INST`` names a global on
  :data:`ALLOWED_GLOBALS`, an allowlist, never a denylist: denylists miss
  ``posix.system`` (how ``os.system`` pickles on Linux), ``runpy._run_code``,
  ``importlib.import_module``, ``pip.main``...
- ``STACK_GLOBAL`` takes its module and name from the stack. The walker keeps a
  model of the stack and of the memo, so operands pushed literally or fetched
  from the memo (``MEMOIZE``/``PUT``/``GET`` in all their widths) are known; an
  operand whose value is not known statically is refused.
- Only :data:`CALLABLE_GLOBALS` may be called (``REDUCE``, ``NEWOBJ``,
  ``NEWOBJ_EX``, ``OBJ``, ``INST``), and the thing called must be a global
  itself, not an object built while reading. Storage classes and dtypes may be
  referenced but not called.
- No in-place opcode (``BUILD``, ``SETITEM(S)``, ``APPEND(S)``, ``ADDITEMS``)
  may target a global: ``BUILD`` on a torch function would set its attributes
  (``__defaults__``...) for the rest of the process.
- ``EXT1``/``EXT2``/``EXT4`` resolve through copyreg's process-wide extension
  registry, which a static scan cannot see: refused.
- ``PERSID``/``BINPERSID`` hand a value to the loader's ``persistent_load``.
  Plain pickles have no business using them; torch uses them, and only them, to
  name a storage record of its own archive (``('storage', FloatStorage, '0',
  'cpu', 6)``). They are allowed only where torch reads them: ``*.pkl`` members
  of a torch zip and the payload pickle of the legacy (pre-1.6) format.
- Fail closed: a pickle that does not parse (unknown opcode, truncated, stack
  underflow, missing memo entry, a zip that torch and :mod:`zipfile` could read
  differently) is refused, because what cannot be checked cannot be shown safe.
  Such input is reported as ``UnsafeArtifact`` (with ``offending=""``), not as
  ``InvalidInput``: the hub has already verified the bytes against the
  manifest, so a malformed pickle was registered that way, and crafted
  malformation is the classic way past a scanner (picklescan fails open on it).
"""

from __future__ import annotations

import io
import pickletools
import re
import struct
import zipfile
import zlib
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from dataclasses import dataclass
from typing import IO, Final

from sentenialx.hub.errors import InvalidInput, UnsafeArtifact

__all__ = [
    "ALLOWED_GLOBALS",
    "CALLABLE_GLOBALS",
    "VALUE_GLOBALS",
    "scan_pickle",
    "scan_torch_zip",
]

CALLABLE_GLOBALS: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        # Plain tensors (torch.save of a tensor or a state_dict).
        ("torch._utils", "_rebuild_tensor_v2"),
        # Tensors of dtypes without a legacy typed storage (float8, uint16...).
        ("torch._utils", "_rebuild_tensor_v3"),
        # torch.save(model.weight): an nn.Parameter.
        ("torch._utils", "_rebuild_parameter"),
        # state_dict() returns an OrderedDict (with a ``_metadata`` attribute,
        # set by one BUILD on the new instance).
        ("collections", "OrderedDict"),
        # Shapes stored as values in a checkpoint. A tuple subclass.
        ("torch", "Size"),
    }
)
"""Globals a pickle may import *and call*: the tensor rebuild functions and two containers.

Deliberately absent: ``torch._tensor._rebuild_from_type_v2`` (tensor subclasses
and tensors with Python attributes; it calls a second callable and sets
arbitrary state), ``_rebuild_parameter_with_state``, quantized, sparse, nested
and wrapper-subclass rebuilds, ``torch.device``, and ``builtins.set`` /
``builtins.complex`` / ``_codecs.encode``, which protocol 2 (torch's default)
uses for sets, complex numbers and bytes. A state dict needs none of them;
such checkpoints are refused and should be re-saved as safetensors.
"""

_STORAGE_TYPES: Final = (
    "Float", "Double", "Half", "BFloat16", "Long", "Int",
    "Short", "Char", "Byte", "Bool", "ComplexFloat", "ComplexDouble",
)  # fmt: skip

_DTYPES: Final = (
    "float16", "float32", "float64", "bfloat16",
    "complex32", "complex64", "complex128",
    "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "bool",
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2",
)  # fmt: skip

VALUE_GLOBALS: Final[frozenset[tuple[str, str]]] = frozenset(
    # torch.save names each storage by its legacy typed-storage class inside
    # the persistent id, e.g. ('storage', torch.FloatStorage, '0', 'cpu', 6).
    {("torch", f"{kind}Storage") for kind in _STORAGE_TYPES}
    # ...or, for dtypes without one, by UntypedStorage plus the dtype.
    | {("torch.storage", "UntypedStorage")}
    # Dtypes pickle as the global ``torch float32`` (dtype.__reduce__ returns
    # its name); they are inert values, also common in checkpoint configs.
    | {("torch", dtype) for dtype in _DTYPES}
)
"""Globals a pickle may reference but not call: storage classes and dtypes.

Quantized storages and dtypes (``QInt8Storage``, ``qint8``...) and the
``bits*`` dtypes are left out: a state dict of a float model does not need them.
"""

ALLOWED_GLOBALS: Final[frozenset[tuple[str, str]]] = CALLABLE_GLOBALS | VALUE_GLOBALS
"""Every ``(module, qualname)`` a pickle may import. Anything else is refused."""

_ZIP_MAGIC: Final = b"PK\x03\x04"
_EOCD: Final = struct.Struct("<4s4H2LH")  # end of central directory, 22 bytes
_ZIP64_LOCATOR: Final = struct.Struct("<4sLQL")  # 20 bytes
_ZIP64_EOCD: Final = struct.Struct("<4sQ2H2L4Q")  # 56 bytes

_LEGACY_PICKLES: Final = 5
"""Pickles torch's legacy loader reads in a row: magic number, protocol version,
sys info, the payload, the storage keys. What follows them is raw storage data."""

_LEGACY_PAYLOAD: Final = 3
"""Index of the legacy payload pickle, the only one whose persistent ids torch resolves."""

_STRING_OPS: Final = frozenset(
    {
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        # Python 2 strings: the unpickler decodes them to str (ASCII by
        # default), so they can feed STACK_GLOBAL too.
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
    }
)
_PUT_OPS: Final = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS: Final = frozenset({"GET", "BINGET", "LONG_BINGET"})
_CALLS: Final = {"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}
"""Opcodes that call the object found this deep in the stack."""
_IN_PLACE: Final = {
    "BUILD": 2,
    "SETITEM": 3,
    "APPEND": 2,
    "SETITEMS": 0,
    "APPENDS": 0,
    "ADDITEMS": 0,
}
"""Opcodes that mutate the object this deep in the stack (0: the one below the mark)."""

_PARSE_ERRORS: Final = (
    ValueError,  # genops: unknown opcode, short read, bad argument; UnicodeDecodeError
    EOFError,  # a truncated compressed zip member
    OSError,
    RuntimeError,  # zipfile: encrypted member
    NotImplementedError,  # zipfile: unsupported compression method
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
)


@dataclass(frozen=True, slots=True)
class _Global:
    """A global on the modelled stack: the class or function a GLOBAL imported."""

    module: str
    qualname: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.qualname}"


class _Sentinel:
    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


_MARK: Final = _Sentinel("<mark>")
_UNKNOWN: Final = _Sentinel("<object>")
"""Any object whose value the walker does not track (a number, a tuple, a call's result)."""


class _Malformed(Exception):
    """The modelled unpickler would have failed here; reported as unparsable."""


def _dotted(module: str, qualname: str) -> str:
    # Name the global as a loader resolves it: torch's weights-only unpickler
    # applies Python 2's compatibility tables whatever the protocol (pickle
    # does below protocol 3), so "__builtin__ exec" is reported as
    # builtins.exec. Only the *report* uses the mapped name: the allowlist is
    # checked against the raw name, and no allowlisted name is a key of these
    # tables, so both loaders resolve an allowed name to the same object.
    if (module, qualname) in NAME_MAPPING:
        module, qualname = NAME_MAPPING[(module, qualname)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f"{module}.{qualname}"


class _Walker:
    """Models the unpickler's stack and memo closely enough to name every global."""

    def __init__(self, *, name: str, where: str, allow_persistent_ids: bool) -> None:
        self.name = name
        self.where = where
        self.allow_persistent_ids = allow_persistent_ids
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}

    def refuse(self, offending: str, why: str) -> UnsafeArtifact:
        return UnsafeArtifact(
            f"{self.where}: pickle {why}; refusing to load it "
            "(only tensors and plain containers are allowed; re-save the weights as safetensors)",
            path=self.name,
            offending=offending,
        )

    # -- the modelled stack -------------------------------------------------

    def peek(self, depth: int) -> object:
        # Below a MARK the real unpickler sees an empty stack (the MARK starts a
        # new one), so an opcode reaching past a mark is an error there too.
        if depth > len(self.stack) or any(x is _MARK for x in self.stack[-depth:]):
            raise _Malformed(f"stack underflow at depth {depth}")
        return self.stack[-depth]

    def pop(self) -> object:
        item = self.peek(1)
        self.stack.pop()
        return item

    def mark_index(self) -> int:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                return i
        raise _Malformed("no MARK on the stack")

    def apply_stack_effect(self, op: pickletools.OpcodeInfo) -> None:
        before = op.stack_before
        if pickletools.markobject in before:
            del self.stack[self.mark_index() :]
            for _ in range(before.index(pickletools.markobject)):
                self.pop()
        else:
            for _ in before:
                self.pop()
        for produced in op.stack_after:
            self.stack.append(_MARK if produced is pickletools.markobject else _UNKNOWN)

    # -- the checks ----------------------------------------------------------

    def check_global(self, module: str, qualname: str, *, called: bool) -> _Global:
        pair = (module, qualname)
        if pair not in ALLOWED_GLOBALS:
            dotted = _dotted(module, qualname)
            raise self.refuse(dotted, f"imports {dotted}, which is not on the allowlist")
        if called and pair not in CALLABLE_GLOBALS:
            raise self.refuse(f"{module}.{qualname}", f"calls {module}.{qualname}")
        return _Global(module, qualname)

    def check_callee(self, callee: object, opcode: str) -> None:
        if not isinstance(callee, _Global):
            raise self.refuse(opcode, f"calls an object that is not an imported global ({opcode})")
        self.check_global(callee.module, callee.qualname, called=True)

    def global_pair(self, arg: object, opcode: str) -> tuple[str, str]:
        # genops joins GLOBAL's two lines with a space; a module or name with a
        # space in it would make the split ambiguous, and none is legitimate.
        parts = arg.split(" ") if isinstance(arg, str) else []
        if len(parts) != 2:
            raise self.refuse(str(arg), f"has a malformed {opcode} argument {arg!r}")
        return parts[0], parts[1]

    def step(self, op: pickletools.OpcodeInfo, arg: object) -> None:
        code = op.name
        if code in _STRING_OPS:
            self.stack.append(arg if isinstance(arg, str) else _UNKNOWN)
        elif code == "GLOBAL":
            module, qualname = self.global_pair(arg, code)
            self.stack.append(self.check_global(module, qualname, called=False))
        elif code == "STACK_GLOBAL":
            top, below = self.pop(), self.pop()
            if not isinstance(below, str) or not isinstance(top, str):
                raise self.refuse(
                    "STACK_GLOBAL",
                    "imports a global whose name is not a string known before reading",
                )
            self.stack.append(self.check_global(below, top, called=False))
        elif code == "INST":
            module, qualname = self.global_pair(arg, code)
            self.check_global(module, qualname, called=True)
            self.apply_stack_effect(op)
        elif code == "OBJ":
            mark = self.mark_index()
            if mark + 1 >= len(self.stack):
                raise _Malformed("OBJ without a class")
            self.check_callee(self.stack[mark + 1], code)
            self.apply_stack_effect(op)
        elif code in _CALLS:
            self.check_callee(self.peek(_CALLS[code]), code)
            self.apply_stack_effect(op)
        elif code in _IN_PLACE:
            depth = _IN_PLACE[code]
            if depth:
                target = self.peek(depth)
            else:
                mark = self.mark_index()
                if mark == 0:
                    raise _Malformed(f"{code} without a target")
                target = self.stack[mark - 1]
            if isinstance(target, _Global):
                raise self.refuse(target.dotted, f"modifies {target.dotted} itself ({code})")
            self.apply_stack_effect(op)
            self.stack[-1] = target  # the target stays, mutated
        elif code in ("PERSID", "BINPERSID"):
            if not self.allow_persistent_ids:
                raise self.refuse(code, f"uses a persistent id ({code}) outside a torch archive")
            self.apply_stack_effect(op)
        elif code in ("EXT1", "EXT2", "EXT4"):
            raise self.refuse(
                code, f"imports a global through the copyreg extension registry ({code})"
            )
        elif code == "MEMOIZE":
            self.memo[len(self.memo)] = self.peek(1)
        elif code in _PUT_OPS:
            if not isinstance(arg, int) or arg < 0:
                raise _Malformed(f"bad memo index {arg!r}")
            self.memo[arg] = self.peek(1)
        elif code in _GET_OPS:
            if not isinstance(arg, int) or arg not in self.memo:
                raise _Malformed(f"memo entry {arg!r} is not set")
            self.stack.append(self.memo[arg])
        elif code == "DUP":
            self.stack.append(self.peek(1))
        elif code == "POP" and self.stack and self.stack[-1] is _MARK:
            # pickle's POP on an empty frame discards the MARK (protocol 0
            # writes POP * (n + 1) to drop a recursive tuple and its mark).
            self.stack.pop()
        else:
            self.apply_stack_effect(op)


def _scan_stream(
    stream: IO[bytes], *, name: str, where: str, allow_persistent_ids: bool
) -> None:
    """Walk one pickle, up to and including its STOP, from ``stream``.

    Raises:
        UnsafeArtifact: the pickle breaks a rule, or does not parse.
    """
    walker = _Walker(name=name, where=where, allow_persistent_ids=allow_persistent_ids)
    try:
        for op, arg, _pos in pickletools.genops(stream):
            walker.step(op, arg)
    except (_Malformed, *_PARSE_ERRORS) as exc:
        raise UnsafeArtifact(
            f"{where}: not a well-formed pickle ({exc}); "
            "refusing to load what cannot be checked",
            path=name,
            offending="",
        ) from exc


def scan_pickle(
    data: bytes | memoryview, *, name: str, allow_persistent_ids: bool = False
) -> None:
    """Check one pickle against the allowlist without unpickling it.

    Only the first pickle in ``data`` is read, up to its STOP opcode, as
    :func:`pickle.loads` would; trailing bytes are ignored.

    Args:
        data: the pickle.
        name: the artifact's name, used in errors.
        allow_persistent_ids: allow ``PERSID``/``BINPERSID``; only for pickles
            that torch reads with its own ``persistent_load`` (see the module
            docstring).

    Raises:
        UnsafeArtifact: the pickle imports or calls a global outside the
            allowlist (``offending`` is its ``module.qualname``), uses an opcode
            the scanner refuses (``offending`` is the opcode), or does not parse
            (``offending`` is empty).
    """
    _scan_stream(io.BytesIO(data), name=name, where=name, allow_persistent_ids=allow_persistent_ids)


def scan_torch_zip(data: bytes | memoryview, *, name: str) -> None:
    """Check every pickle a torch checkpoint (``.pt``, ``.pth``, ``.bin``) holds.

    Torch decides the format by the first four bytes (``serialization._is_zipfile``)
    and so does this function: a file that starts with a zip local header is a
    zip, whose ``*.pkl`` members are scanned; anything else is read as torch's
    legacy format, a run of up to five pickles followed by raw storage data,
    and each pickle is scanned. (``zipfile.is_zipfile`` would not do: it finds
    a zip trailer anywhere, so a pickle with a zip glued on would be scanned as
    the zip while torch unpickles the pickle.)

    In the zip, member names must be plain relative paths, unique even ignoring
    case (torch's reader looks names up case-insensitively), and the central
    directory must sit where both :mod:`zipfile` and torch's reader look for it,
    so that both read the same bytes for every member.

    Raises:
        UnsafeArtifact: a pickle breaks a rule (see :func:`scan_pickle`), a
            member name is a path trick, or the archive cannot be read the same
            way torch reads it.
        InvalidInput: the zip holds no pickle at all: it is not a torch checkpoint.
    """
    if bytes(data[: len(_ZIP_MAGIC)]) != _ZIP_MAGIC:
        _scan_legacy(data, name=name)
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _PARSE_ERRORS as exc:
        raise UnsafeArtifact(
            f"{name}: starts like a zip but is not a readable one ({exc}); "
            "refusing to load what cannot be checked",
            path=name,
        ) from exc
    with archive:
        _check_central_directory(data, archive, name=name)
        members = archive.infolist()
        seen: set[str] = set()
        pickles: list[zipfile.ZipInfo] = []
        for info in members:
            _check_member_name(info, name=name)
            folded = info.filename.casefold()
            if folded in seen:
                raise UnsafeArtifact(
                    f"{name}: zip member {info.filename!r} appears twice (ignoring case); "
                    "torch and zipfile could read different ones",
                    path=name,
                    offending=info.filename,
                )
            seen.add(folded)
            if folded.endswith(".pkl"):
                pickles.append(info)
        if not pickles:
            raise InvalidInput(f"{name}: a zip without data.pkl is not a torch checkpoint")
        # Open each ZipInfo, never a name: with duplicate names, a name lookup
        # would reach only one of them.
        for info in pickles:
            where = f"{name} ({info.filename})"
            try:
                with archive.open(info) as member:
                    _scan_stream(member, name=name, where=where, allow_persistent_ids=True)
            except _PARSE_ERRORS as exc:
                raise UnsafeArtifact(
                    f"{where}: cannot read the zip member ({exc}); "
                    "refusing to load what cannot be checked",
                    path=name,
                ) from exc


def _scan_legacy(data: bytes | memoryview, *, name: str) -> None:
    """Scan the pickles torch's legacy (non-zip) loader would read, in order.

    Raises:
        UnsafeArtifact: a pickle breaks a rule or does not parse.
    """
    stream = io.BytesIO(data)
    for index in range(_LEGACY_PICKLES):
        if index and stream.tell() == len(data):
            break  # a lone pickle; torch.load will reject it as not a checkpoint
        _scan_stream(
            stream,
            name=name,
            where=name if index == 0 else f"{name} (pickle {index + 1})",
            allow_persistent_ids=index == _LEGACY_PAYLOAD,
        )


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_member_name(info: zipfile.ZipInfo, *, name: str) -> None:
    """Refuse member names that are not plain relative paths.

    Raises:
        UnsafeArtifact: absolute, drive-lettered, backslashed, ``..``/``.``/empty
            components, or control characters.
    """
    member = info.filename
    parts = member.split("/")
    if info.is_dir() and len(parts) > 1 and parts[-1] == "":
        parts.pop()
    bad = (
        not member
        or member.startswith("/")
        or "\\" in member
        or _DRIVE.match(member) is not None
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in member)
        or any(part in ("", ".", "..") for part in parts)
    )
    if bad:
        raise UnsafeArtifact(
            f"{name}: zip member name {member!r} is not a plain relative path",
            path=name,
            offending=member,
        )


def _check_central_directory(
    data: bytes | memoryview, archive: zipfile.ZipFile, *, name: str
) -> None:
    """Make sure torch's reader (miniz) and :mod:`zipfile` see the same members.

    Both find the end record by searching back from the end, but zipfile then
    shifts every offset by any data found before the archive ("concat"), and
    trusts zip64 values that miniz uses only when the 32-bit field is saturated.
    Requiring the end record at the very end (no comment), the zip64 record
    right before its locator, consistent 32/64-bit values, no shift and the same
    entry count makes their readings agree. Torch writes exactly this layout.

    Raises:
        UnsafeArtifact: the layout leaves room for the two readers to differ.
    """

    def refuse(why: str) -> UnsafeArtifact:
        return UnsafeArtifact(
            f"{name}: zip layout {why}; torch could read other bytes than the scanner",
            path=name,
        )

    end = len(data) - _EOCD.size
    if end < 0:
        raise refuse("is truncated")
    sig, disk, cd_disk, _on_disk, entries, _cd_size, cd_offset, comment = _EOCD.unpack_from(
        data, end
    )
    if sig != b"PK\x05\x06" or comment != 0:
        raise refuse("has data or a comment after the end record")
    if disk or cd_disk:
        raise refuse("spans several disks")
    locator_at = end - _ZIP64_LOCATOR.size
    if locator_at >= 0 and bytes(data[locator_at : locator_at + 4]) == b"PK\x06\x07":
        _, _, zip64_at, _ = _ZIP64_LOCATOR.unpack_from(data, locator_at)
        if zip64_at != locator_at - _ZIP64_EOCD.size:
            raise refuse("has a zip64 end record away from its locator")
        sig64, *_, entries64, _size64, offset64 = _ZIP64_EOCD.unpack_from(data, zip64_at)
        if sig64 != b"PK\x06\x06":
            raise refuse("has a zip64 locator without a zip64 end record")
        if (entries not in (0xFFFF, entries64)) or (cd_offset not in (0xFFFFFFFF, offset64)):
            raise refuse("has 32-bit and zip64 end records that disagree")
        entries, cd_offset = entries64, offset64
    if archive.start_dir != cd_offset:
        raise refuse("has data before the archive")
    if len(archive.infolist()) != entries:
        raise refuse("has a member count that does not match the central directory")
