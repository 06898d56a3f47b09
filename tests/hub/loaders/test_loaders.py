"""Loaders and the pickle scanner, against real torch, onnxruntime and safetensors.

Every malicious payload here is live: a control test feeds it to
``pickle.loads`` and watches it create a file in ``tmp_path``. The refusal
tests then check that the same payload is refused, naming the offending
global, and that the file was not created.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import random
import runpy
import struct
import sys
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
st_torch = pytest.importorskip("safetensors.torch")
st_numpy = pytest.importorskip("safetensors.numpy")

from sentenialx.hub.errors import InvalidInput, MissingDependency, UnsafeArtifact  # noqa: E402
from sentenialx.hub.loaders import (  # noqa: E402
    format_for,
    load_bytes,
    load_onnx,
    load_safetensors,
    load_torch,
    scan_pickle,
    scan_torch_zip,
)
from sentenialx.hub.loaders.pickle_safety import (  # noqa: E402
    ALLOWED_GLOBALS,
    CALLABLE_GLOBALS,
)
from sentenialx.hub.loaders.safetensors import _load_numpy  # noqa: E402
from sentenialx.hub.loaders.torch import _check_torch_version  # noqa: E402

# -- helpers -----------------------------------------------------------------


class _Reduce:
    """An object that pickles as ``func(*args)``: the classic payload."""

    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[object, ...]:
        return (self.func, self.args)


def torch_bytes(obj: object, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def rewrite_zip(data: bytes, replace: dict[str, bytes]) -> bytes:
    """Copy a torch zip, replacing some members' contents."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, replace.get(info.filename, src.read(info)))
    return out.getvalue()


def make_zip(members: list[tuple[str, bytes]], *, comment: bytes = b"") -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is what some tests want
        with zipfile.ZipFile(out, "w") as zf:
            for member, content in members:
                zf.writestr(member, content)
            zf.comment = comment
    return out.getvalue()


def sbu(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def touch_tail(marker: Path) -> bytes:
    """After STACK_GLOBAL has pushed posix.system: call it with ``touch marker``."""
    return sbu(f"touch {marker}") + b"\x85R."  # TUPLE1 REDUCE STOP


def legit_state_dict() -> dict[str, object]:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    return {
        "model": model.state_dict(),  # an OrderedDict with a _metadata attribute
        "ordered": OrderedDict([("b", 1), ("a", [1, 2])]),
        "nested": {"a": {"b": [1, 2.5, "three", None, [True, False]]}, "t": (1, 2)},
        "epoch": 7,
        "lr": 0.001,
        "name": "distill",
        "note": None,
    }


def assert_same(loaded: object, expected: object) -> None:
    if isinstance(expected, torch.Tensor):
        assert isinstance(loaded, torch.Tensor)
        assert loaded.dtype == expected.dtype
        assert torch.equal(loaded, expected)
    elif isinstance(expected, dict):
        assert isinstance(loaded, dict)
        assert type(loaded) is type(expected)
        assert list(loaded) == list(expected)
        for key in expected:
            assert_same(loaded[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert type(loaded) is type(expected)
        assert len(loaded) == len(expected)
        for a, b in zip(loaded, expected, strict=True):
            assert_same(a, b)
    else:
        assert loaded == expected


# -- live payloads -------------------------------------------------------------


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def _os_system(marker: Path, protocol: int) -> bytes:
    return pickle.dumps(_Reduce(os.system, f"touch {marker}"), protocol=protocol)


def _exec(marker: Path, protocol: int) -> bytes:
    return pickle.dumps(_Reduce(exec, f"open({str(marker)!r}, 'w').close()"), protocol=protocol)


def _run_code(marker: Path, protocol: int) -> bytes:
    code = f"open({str(marker)!r}, 'w').close()"
    run_code = runpy._run_code  # type: ignore[attr-defined]
    return pickle.dumps(_Reduce(run_code, code, {}), protocol=protocol)


@pytest.fixture
def import_module_payload(tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """importlib.import_module of a module that creates the marker when imported."""
    module = f"evil_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return pickle.dumps(_Reduce(importlib.import_module, module), protocol=4)


GLOBAL_PAYLOADS = [
    pytest.param(_os_system, 0, "posix.system", id="os.system-protocol0"),
    pytest.param(_os_system, 2, "posix.system", id="os.system-protocol2"),
    pytest.param(_os_system, 4, "posix.system", id="os.system-protocol4"),
    pytest.param(_os_system, 5, "posix.system", id="os.system-protocol5"),
    pytest.param(_exec, 2, "builtins.exec", id="exec-protocol2"),
    pytest.param(_exec, 4, "builtins.exec", id="exec-protocol4"),
    pytest.param(_run_code, 2, "runpy._run_code", id="runpy-protocol2"),
    pytest.param(_run_code, 5, "runpy._run_code", id="runpy-protocol5"),
]


def _memo_payloads(marker: Path) -> dict[str, bytes]:
    """STACK_GLOBAL whose operands come from the memo, through every memo opcode."""
    tail = touch_tail(marker)
    return {
        "MEMOIZE/BINGET": b"\x80\x04"
        + sbu("posix") + b"\x94" + b"0"  # MEMOIZE (0) POP
        + sbu("system") + b"\x94" + b"0"  # MEMOIZE (1) POP
        + b"h\x00h\x01\x93" + tail,  # BINGET 0, BINGET 1, STACK_GLOBAL
        "BINPUT/BINGET": b"\x80\x04"
        + sbu("posix") + b"q\x07" + b"0"
        + sbu("system") + b"q\x09" + b"0"
        + b"h\x07h\x09\x93" + tail,
        "LONG_BINPUT/LONG_BINGET": b"\x80\x04"
        + sbu("posix") + b"r" + struct.pack("<I", 70000) + b"0"
        + sbu("system") + b"r" + struct.pack("<I", 70001) + b"0"
        + b"j" + struct.pack("<I", 70000) + b"j" + struct.pack("<I", 70001) + b"\x93" + tail,
        "PUT/GET": b"Vposix\np12\n0Vsystem\np13\n0g12\ng13\n\x93" + tail,
        # A decoy: the memo first holds an allowed name, then is overwritten.
        # A scanner that remembers the first PUT sees collections.OrderedDict.
        "memo-overwrite": b"\x80\x04"
        + sbu("collections") + b"q\x00" + b"0"
        + sbu("OrderedDict") + b"q\x01" + b"0"
        + sbu("posix") + b"q\x00" + b"0"
        + sbu("system") + b"q\x01" + b"0"
        + b"h\x00h\x01\x93" + tail,
        "DUP": b"\x80\x04" + sbu("posix") + sbu("system") + b"2" + b"0\x93" + tail,
    }  # fmt: skip


MEMO_CASES = list(_memo_payloads(Path("x")))


def _inst_payload(marker: Path) -> bytes:
    # Protocol 0 INST: MARK, the argument, INST "os system" (calls it).
    return b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n."


def _obj_payload(marker: Path) -> bytes:
    return b"(cos\nsystem\nS'touch " + str(marker).encode() + b"'\no."


# -- control: the payloads really run code ----------------------------------------


@pytest.mark.parametrize(("build", "protocol", "offending"), GLOBAL_PAYLOADS)
def test_control_global_payloads_are_live(
    build: Callable[[Path, int], bytes], protocol: int, offending: str, marker: Path
) -> None:
    pickle.loads(build(marker, protocol))
    assert marker.exists()


@pytest.mark.parametrize("case", MEMO_CASES)
def test_control_memo_payloads_are_live(case: str, marker: Path) -> None:
    pickle.loads(_memo_payloads(marker)[case])
    assert marker.exists()


@pytest.mark.parametrize("build", [_inst_payload, _obj_payload], ids=["INST", "OBJ"])
def test_control_inst_obj_payloads_are_live(build: Callable[[Path], bytes], marker: Path) -> None:
    pickle.loads(build(marker))
    assert marker.exists()


def test_control_import_module_payload_is_live(import_module_payload: bytes, marker: Path) -> None:
    pickle.loads(import_module_payload)
    assert marker.exists()


# -- refusals -------------------------------------------------------------------


@pytest.mark.parametrize(("build", "protocol", "offending"), GLOBAL_PAYLOADS)
def test_malicious_pickles_are_refused(
    build: Callable[[Path, int], bytes], protocol: int, offending: str, marker: Path
) -> None:
    payload = build(marker, protocol)
    with pytest.raises(UnsafeArtifact) as info:
        scan_pickle(payload, name="evil.pkl")
    assert info.value.offending == offending
    assert info.value.path == "evil.pkl"
    assert offending in str(info.value)
    # The same bytes through the loader path, as a legacy (non-zip) torch file.
    with pytest.raises(UnsafeArtifact) as info:
        load_bytes(payload, fmt="pt", name="evil.pt")
    assert info.value.offending == offending
    assert not marker.exists()


def test_import_module_is_refused(import_module_payload: bytes, marker: Path) -> None:
    with pytest.raises(UnsafeArtifact) as info:
        load_torch(import_module_payload, name="evil.pt")
    assert info.value.offending == "importlib.import_module"
    assert not marker.exists()


@pytest.mark.parametrize("case", MEMO_CASES)
def test_stack_global_operands_are_resolved_through_the_memo(case: str, marker: Path) -> None:
    with pytest.raises(UnsafeArtifact) as info:
        scan_pickle(_memo_payloads(marker)[case], name="evil.pkl")
    assert info.value.offending == "posix.system"
    assert not marker.exists()


@pytest.mark.parametrize("build", [_inst_payload, _obj_payload], ids=["INST", "OBJ"])
def test_inst_and_obj_are_refused(build: Callable[[Path], bytes], marker: Path) -> None:
    with pytest.raises(UnsafeArtifact) as info:
        scan_pickle(build(marker), name="evil.pkl")
    assert info.value.offending == "os.system"
    assert not marker.exists()


def test_stack_global_with_operands_not_known_statically_is_refused() -> None:
    # SHORT_BINBYTES operands: not strings, so not resolvable by the scanner.
    payload = b"\x80\x04C\x05posixC\x06system\x93" + touch_tail(Path("x"))
    with pytest.raises(UnsafeArtifact) as info:
        scan_pickle(payload, name="evil.pkl")
    assert info.value.offending == "STACK_GLOBAL"


def test_extension_registry_is_refused(marker: Path) -> None:
    import copyreg

    code = 0xBEEF
    copyreg.add_extension("posix", "system", code)
    try:
        payload = pickle.dumps(_Reduce(os.system, f"touch {marker}"), protocol=2)
        assert b"\x83" in payload  # EXT2, no GLOBAL in sight
        with pytest.raises(UnsafeArtifact) as info:
            scan_pickle(payload, name="evil.pkl")
        assert info.value.offending == "EXT2"
        assert not marker.exists()
        pickle.loads(payload)  # control: live while the extension is registered
        assert marker.exists()
    finally:
        copyreg.remove_extension("posix", "system", code)


def test_persistent_ids_only_inside_torch_archives() -> None:
    class PersistentPickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return "storage-0" if obj == "tensor" else None

    buf = io.BytesIO()
    PersistentPickler(buf, protocol=2).dump({"w": "tensor"})
    with pytest.raises(UnsafeArtifact) as info:
        scan_pickle(buf.getvalue(), name="p.pkl")
    assert info.value.offending == "BINPERSID"
    scan_pickle(buf.getvalue(), name="p.pkl", allow_persistent_ids=True)


def test_calling_a_storage_class_is_refused() -> None:
    # torch.FloatStorage may be named (in persistent ids) but not called:
    # FloatStorage(10**12) would be an allocation of the attacker's choosing.
    payload = b"\x80\x02ctorch\nFloatStorage\nJ\x00\x00\x00\x40\x85R."
    with pytest.raises(UnsafeArtifact) as info:
        scan_pickle(payload, name="p.pkl")
    assert info.value.offending == "torch.FloatStorage"


def test_calling_a_non_global_is_refused() -> None:
    payload = b"\x80\x02})R."  # EMPTY_DICT EMPTY_TUPLE REDUCE: call a dict
    with pytest.raises(UnsafeArtifact) as info:
        scan_pickle(payload, name="p.pkl")
    assert info.value.offending == "REDUCE"


def test_build_on_a_global_is_refused() -> None:
    # Would set torch._utils._rebuild_tensor_v2.__defaults__ for the whole process.
    payload = (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"
        b"N}X\x0c\x00\x00\x00__defaults__N\x85s\x86b."  # (None, {...: (None,)}) BUILD
    )
    with pytest.raises(UnsafeArtifact) as info:
        scan_pickle(payload, name="p.pkl")
    assert info.value.offending == "torch._utils._rebuild_tensor_v2"


def test_torch_zip_with_evil_data_pkl_is_refused(marker: Path) -> None:
    evil = _os_system(marker, 2)
    data = rewrite_zip(torch_bytes({"w": torch.ones(2)}), {"archive/data.pkl": evil})
    with pytest.raises(UnsafeArtifact) as info:
        scan_torch_zip(data, name="evil.pt")
    assert info.value.offending == "posix.system"
    assert "archive/data.pkl" in str(info.value)
    with pytest.raises(UnsafeArtifact):
        load_torch(data, name="evil.pt")
    assert not marker.exists()
    pickle.loads(evil)  # control: the member is live
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_save_of_an_evil_object_is_refused(zip_format: bool, marker: Path) -> None:
    data = torch_bytes(
        {"w": torch.ones(2), "x": _Reduce(os.system, f"touch {marker}")},
        _use_new_zipfile_serialization=zip_format,
    )
    with pytest.raises(UnsafeArtifact) as info:
        load_bytes(data, fmt="pt", name="evil.pt")
    assert info.value.offending == "posix.system"
    assert not marker.exists()


def test_pickle_with_a_zip_glued_on_is_scanned_as_torch_reads_it(marker: Path) -> None:
    # torch picks zip vs legacy by the first four bytes; zipfile.is_zipfile
    # finds the trailer anywhere. Scan the pickle torch would unpickle.
    polyglot = _os_system(marker, 2) + torch_bytes({"w": torch.ones(2)})
    assert zipfile.is_zipfile(io.BytesIO(polyglot))
    with pytest.raises(UnsafeArtifact) as info:
        load_torch(polyglot, name="polyglot.pt")
    assert info.value.offending == "posix.system"
    assert not marker.exists()


def test_protocol_2_builtins_in_a_checkpoint_are_refused() -> None:
    # Sets, complex numbers and bytes need builtins.set / builtins.complex /
    # _codecs.encode under torch's protocol 2: not allowlisted (by design).
    data = torch_bytes({"w": torch.ones(2), "labels": {"benign", "malicious"}})
    with pytest.raises(UnsafeArtifact) as info:
        load_torch(data, name="sets.pt")
    assert info.value.offending == "builtins.set"


# -- fail closed ------------------------------------------------------------------


UNPARSABLE = {
    "random": random.Random(0).randbytes(4096),
    "truncated": pickle.dumps({"a": [1, 2.5, "three", None] * 20}, protocol=2)[:-40],
    "empty": b"",
    "no-stop": b"\x80\x02N",
    "memo-miss": b"\x80\x02h\x05.",
    "dup-under-mark": b"\x80\x02N(2.",  # DUP reaching past a MARK
}


@pytest.mark.parametrize("case", list(UNPARSABLE))
def test_unparsable_pickles_are_refused(case: str) -> None:
    """Decision: anything the scanner cannot parse is UnsafeArtifact, offending ''.

    It cannot be shown safe; crafted malformation is how scanners are bypassed,
    and the hub has already verified the bytes, so they were registered broken.
    """
    with pytest.raises(UnsafeArtifact) as info:
        scan_pickle(UNPARSABLE[case], name="bad.pkl")
    assert info.value.offending == ""
    with pytest.raises(UnsafeArtifact):
        load_bytes(UNPARSABLE[case], fmt="bin", name="bad.bin")


def test_truncated_torch_zip_is_refused() -> None:
    data = torch_bytes({"w": torch.ones(8)})
    with pytest.raises(UnsafeArtifact):
        load_torch(data[: len(data) // 2], name="cut.pt")


def test_legit_pickle_that_is_not_a_checkpoint_is_invalid_input() -> None:
    # Passes the scan (no globals), then torch rejects the magic number.
    with pytest.raises(InvalidInput):
        load_torch(pickle.dumps({"a": 1}, protocol=2), name="plain.pt")


# -- zip tricks -----------------------------------------------------------------------


def _clean_members() -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(torch_bytes({"w": torch.ones(2)}))) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


@pytest.mark.parametrize(
    "member",
    [
        "../data.pkl",
        "archive/../../data.pkl",
        "/archive/data.pkl",
        "archive\\data.pkl",
        "C:/archive/data.pkl",
        "archive//data.pkl",
        "archive/./data.pkl",
        "archive/da\x01ta.pkl",
    ],
)
def test_zip_member_path_tricks_are_refused(member: str) -> None:
    members = _clean_members()
    members.append((member, b"\x80\x02N."))
    with pytest.raises(UnsafeArtifact) as info:
        scan_torch_zip(make_zip(members), name="tricky.pt")
    assert info.value.offending == member


@pytest.mark.parametrize("duplicate", ["archive/data.pkl", "ARCHIVE/DATA.PKL"])
def test_duplicate_zip_members_are_refused(duplicate: str, marker: Path) -> None:
    # torch's reader looks names up case-insensitively and may pick either copy.
    members = [(duplicate, _os_system(marker, 2)), *_clean_members()]
    with pytest.raises(UnsafeArtifact, match="appears twice"):
        load_torch(make_zip(members), name="dup.pt")
    assert not marker.exists()


def test_zip_with_data_before_the_archive_is_refused() -> None:
    # zipfile shifts offsets to cope with prepended data; torch's reader does not.
    data = make_zip(_clean_members())
    shifted = b"PK\x03\x04" + bytes(60) + data
    with zipfile.ZipFile(io.BytesIO(shifted)) as zf:
        assert zf.testzip() is None  # zipfile reads it happily
    with pytest.raises(UnsafeArtifact, match="data before the archive"):
        scan_torch_zip(shifted, name="shifted.pt")


def test_zip_with_a_comment_is_refused() -> None:
    with pytest.raises(UnsafeArtifact, match="comment"):
        scan_torch_zip(make_zip(_clean_members(), comment=b"hi"), name="c.pt")


def test_zip_without_a_pickle_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        scan_torch_zip(make_zip([("archive/data/0", b"\x00" * 8)]), name="nopkl.pt")


# -- legitimate checkpoints -----------------------------------------------------------


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_legit_state_dict_loads(zip_format: bool) -> None:
    checkpoint = legit_state_dict()
    data = torch_bytes(checkpoint, _use_new_zipfile_serialization=zip_format)
    scan_torch_zip(data, name="model.pt")
    loaded = load_bytes(data, fmt=format_for("model.pt") or "", name="model.pt")
    assert_same(loaded, checkpoint)
    assert isinstance(loaded, dict)
    assert loaded["model"]._metadata == checkpoint["model"]._metadata  # type: ignore[attr-defined]


def test_real_model_round_trip_through_load_torch() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    data = torch_bytes(model.state_dict())
    fresh = torch.nn.Linear(4, 2)
    fresh.load_state_dict(load_torch(memoryview(data), name="linear.bin"))
    x = torch.randn(3, 4)
    assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(lambda: torch.nn.Linear(2, 2).weight, id="parameter"),
        pytest.param(lambda: torch.arange(10)[2:5], id="view"),
        pytest.param(
            lambda: {
                "bf16": torch.ones(3, dtype=torch.bfloat16),
                "i64": torch.arange(3),
                "bool": torch.tensor([True, False]),
                "dtype": torch.float16,
                "shape": torch.Size([2, 3]),
            },
            id="dtypes-and-sizes",
        ),
        pytest.param(
            lambda: {
                "f8": torch.zeros(3, dtype=torch.float8_e4m3fn),
                "u16": torch.zeros(2, dtype=torch.uint16),
            },
            id="untyped-storage-v3",
        ),
    ],
)
def test_other_legit_torch_objects_load(obj: Callable[[], object]) -> None:
    value = obj()
    loaded = load_torch(torch_bytes(value), name="x.pt")
    if isinstance(value, torch.Tensor):
        assert type(loaded) is type(value)
        assert torch.equal(loaded, value)
    else:
        assert isinstance(loaded, dict) and isinstance(value, dict)
        assert loaded.keys() == value.keys()


def test_optimizer_state_loads() -> None:
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    loaded = load_torch(torch_bytes(state), name="opt.pt")
    assert isinstance(loaded, dict)
    assert loaded["param_groups"] == state["param_groups"]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [4, 5])
def test_higher_protocol_state_dict_passes_the_scan(protocol: int) -> None:
    # STACK_GLOBAL with memoised strings; torch's own weights-only loader does
    # not accept FRAME (protocol 4+), so this is refused later, by torch.
    data = torch_bytes(legit_state_dict(), pickle_protocol=protocol)
    scan_torch_zip(data, name="p4.pt")
    with pytest.raises(UnsafeArtifact, match="weights-only"):
        load_torch(data, name="p4.pt")


# -- the allowlist ----------------------------------------------------------------------


def test_every_allowlisted_global_exists() -> None:
    for module, qualname in ALLOWED_GLOBALS:
        obj: object = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        assert obj is not None
    for module, qualname in CALLABLE_GLOBALS:
        assert callable(getattr(importlib.import_module(module), qualname))


def test_allowlist_is_a_subset_of_torch_weights_only_allowlist() -> None:
    # Private torch API, used here only to check we are never more permissive.
    from torch._weights_only_unpickler import _get_allowed_globals

    torch_allowed = set(_get_allowed_globals())
    ours = {f"{module}.{qualname}" for module, qualname in ALLOWED_GLOBALS}
    assert ours <= torch_allowed, ours - torch_allowed


def test_allowlisted_names_are_untouched_by_python2_compat_tables() -> None:
    # So pickle (maps below protocol 3) and torch (maps always) resolve an
    # allowed name to the same object.
    from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

    for module, qualname in ALLOWED_GLOBALS:
        assert (module, qualname) not in NAME_MAPPING
        assert module not in IMPORT_MAPPING


# -- torch version ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.5.1", "2.9.1+cu121", "1.13.0", "nightly"])
def test_old_torch_is_refused(version: str) -> None:
    with pytest.raises(MissingDependency) as info:
        _check_torch_version(version)
    assert info.value.extra == "torch"
    assert version in str(info.value)
    assert "sentenialx[torch]" in str(info.value)


@pytest.mark.parametrize("version", ["2.10.0", "2.13.0+cpu", "2.10.0a0+git1234", "3.0.0"])
def test_supported_torch_is_accepted(version: str) -> None:
    _check_torch_version(version)


# -- ONNX -----------------------------------------------------------------------------


def test_exported_linear_loads_and_runs() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 4),),
            buf,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    session = load_bytes(buf.getvalue(), fmt=format_for("student.onnx") or "", name="student.onnx")
    assert isinstance(session, ort.InferenceSession)
    assert session.get_providers() == ["CPUExecutionProvider"]
    x = torch.randn(5, 4)
    (y,) = session.run(None, {"x": x.numpy()})
    np.testing.assert_allclose(y, model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def _external(tensor: Any, location: str) -> Any:
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("length", "8")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


@pytest.mark.parametrize("where", ["initializer", "constant-attribute"])
def test_onnx_external_data_is_refused(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnx import TensorProto, helper, numpy_helper

    (tmp_path / "secret.bin").write_bytes(b"ABCDEFGH")
    monkeypatch.chdir(tmp_path)  # where an old onnxruntime would look
    weight = _external(numpy_helper.from_array(np.zeros(2, np.float32), "W"), "secret.bin")
    if where == "initializer":
        nodes, inits = [helper.make_node("Add", ["X", "W"], ["Y"])], [weight]
    else:
        const = helper.make_node("Constant", [], ["W"], value=weight)
        nodes, inits = [const, helper.make_node("Add", ["X", "W"], ["Y"])], []
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsafeArtifact) as info:
        load_onnx(model.SerializeToString(), name="ext.onnx")
    assert info.value.offending == "secret.bin"


def test_onnx_garbage_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        load_onnx(b"definitely not a protobuf \xff\xff\xff", name="bad.onnx")


# -- safetensors ------------------------------------------------------------------------


def test_safetensors_round_trip() -> None:
    tensors = {
        "w": torch.randn(3, 4),
        "b16": torch.ones(2, dtype=torch.bfloat16),
        "idx": torch.arange(5),
    }
    data = st_torch.save(tensors)
    loaded = load_bytes(memoryview(data), fmt=format_for("m.safetensors") or "", name="m")
    assert isinstance(loaded, dict)
    assert loaded.keys() == tensors.keys()
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype


def test_safetensors_numpy_path() -> None:
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    loaded = _load_numpy(st_numpy.save(arrays), name="m.safetensors")
    np.testing.assert_array_equal(loaded["w"], arrays["w"])


@pytest.mark.parametrize("loader", [load_safetensors, _load_numpy], ids=["torch", "numpy"])
def test_safetensors_garbage_is_invalid_input(loader: Callable[..., object]) -> None:
    with pytest.raises(InvalidInput):
        loader(b"\xff" * 64, name="bad.safetensors")


# -- dispatch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [
        ("threat_student_v1.2.0.onnx", "onnx"),
        ("model.pt", "torch"),
        ("model.PTH", "torch"),
        ("lora/adapter/pytorch_model.bin", "torch"),
        ("encoder.safetensors", "safetensors"),
        ("threat_student_v1.2.0_meta.json", None),
        ("weights.pkl", None),
        ("README", None),
    ],
)
def test_format_for(filename: str, fmt: str | None) -> None:
    assert format_for(filename) == fmt


@pytest.mark.parametrize("fmt", ["pt", ".PT", "torch", "pytorch", "bin", "pth"])
def test_load_bytes_accepts_torch_aliases(fmt: str) -> None:
    loaded = load_bytes(torch_bytes({"w": torch.ones(1)}), fmt=fmt, name="m")
    assert isinstance(loaded, dict)


@pytest.mark.parametrize("fmt", ["pkl", "pickle", "gguf", ""])
def test_load_bytes_refuses_unknown_formats(fmt: str) -> None:
    with pytest.raises(InvalidInput, match="no loader"):
        load_bytes(pickle.dumps(1), fmt=fmt, name="m")
