"""The CLI through click's CliRunner, and the real console script for ``models path``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sentenialx.hub import errors as E
from sentenialx.hub.cli import EXIT_CODES, EXIT_INTERNAL, EXIT_TABLE, exit_code_for

CONSOLE = Path(sys.executable).parent / "sentenialx"


def ok(r):  # type: ignore[no-untyped-def]
    assert r.exit_code == 0, (r.exit_code, r.stdout, r.stderr, r.exception)
    return r


def one_line_error(r, code: int, *needles: str) -> str:  # type: ignore[no-untyped-def]
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr, r.exception)
    assert r.exception is None
    err = r.stderr.strip()
    assert "\n" not in err, err
    assert err.startswith("error: ")
    assert "Traceback" not in r.stderr + r.stdout
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def reg(cli, sample_file, tmp_path):
    """distill 1.0.0 (with a report) and 1.1.0 (alias stable), via the CLI."""
    rep = tmp_path / "report.md"
    rep.write_text("# report\n")
    ok(cli("register", "distill", sample_file(3000, seed=1, name="student.onnx"),
           "--attach", f"report={rep}", "--meta", "metrics.accuracy=0.9"))
    ok(cli("register", "distill", sample_file(3000, seed=2, name="student.onnx"), "--bump",
           "minor", "--meta", "metrics.accuracy=0.95", "--alias", "stable"))
    return cli


def test_exit_code_table() -> None:
    codes = [row.code for row in EXIT_TABLE]
    assert codes == sorted(set(codes)), "one row per code, in order"
    assert {0, 1, 2, 70} <= set(codes)
    assert (exit_code_for(E.NotFound("x")), exit_code_for(E.AlreadyExists("x")),
            exit_code_for(E.InvalidInput("x")), exit_code_for(E.IntegrityError("x"))) == (3, 4, 5, 6)


def test_exit_codes_follow_the_mro() -> None:
    # A subclass takes its nearest mapped ancestor's code; a hub error that is also an
    # OSError keeps its own code rather than the OSError row's.
    assert exit_code_for(E.InvalidName("x")) == exit_code_for(E.TooLarge("x")) == 5
    assert exit_code_for(E.Unauthenticated("x")) == 14
    assert exit_code_for(E.AlreadyExists("x")) == 4 != exit_code_for(FileExistsError("x"))
    assert exit_code_for(FileNotFoundError("x")) == exit_code_for(E.StoreUnavailable("x")) == 10
    assert exit_code_for(RuntimeError("bug")) == EXIT_INTERNAL
    import click

    assert exit_code_for(click.UsageError("x")) == click.UsageError("x").exit_code == 2


def test_every_hub_error_has_its_own_row() -> None:
    # A new error class must be given a code here, not fall back to the catch-all 1.
    classes = [c for c in vars(E).values()
               if isinstance(c, type) and issubclass(c, E.HubError) and c is not E.HubError]
    assert classes
    for cls in classes:
        nearest = next(c for c in cls.__mro__ if c in EXIT_CODES)
        assert nearest is not E.HubError, f"{cls.__name__} has no exit code in EXIT_TABLE"


def test_help_and_version() -> None:
    from click.testing import CliRunner

    from sentenialx.hub.cli import cli as root

    r = CliRunner().invoke(root, ["models", "--help"])
    assert r.exit_code == 0
    for cmd in ("register", "list", "show", "versions", "path", "verify", "alias", "revoke",
                "delete", "log", "diff", "gc", "fsck", "export-registry", "import-registry"):
        assert cmd in r.stdout
    for cmd in ("register", "path", "verify", "gc"):
        r = CliRunner().invoke(root, ["models", cmd, "--help"])
        assert r.exit_code == 0 and "--hub" in r.stdout
    assert CliRunner().invoke(root, ["--version"]).exit_code == 0


def test_register_with_every_option(cli, hub, sample_file, tmp_path) -> None:
    ok(cli("register", "teacher", sample_file(100, seed=9, name="teacher.pt")))
    meta_file = tmp_path / "meta.json"
    meta_file.write_text(json.dumps({"description": "student", "params": {"lr": 0.01}}))
    log = tmp_path / "train.log"
    log.write_text("loss 0.1\n")
    src = sample_file(4000, seed=3, name="student.onnx")
    data_digest = hashlib.sha256(b"data").hexdigest()
    r = ok(cli("register", "distill", src, "--version", "2.0.0", "--meta-file", meta_file,
               "--meta", "metrics.f1=0.93", "--meta", "owner=detection", "--meta", "tags=[1,2]",
               "--parent", "teacher=teacher@1.0.0", "--data-digest", data_digest,
               "--attach", f"log={log}", "--alias", "staging", "--name", "threat_student",
               "--link", "--json"))
    d = r.json()
    assert d["version"] == "2.0.0" and d["stem"] == "threat_student_v2.0.0"
    assert d["metadata"] == {"description": "student", "params": {"lr": 0.01},
                             "metrics": {"f1": 0.93}, "owner": "detection", "tags": [1, 2],
                             "format": "onnx"}
    assert d["lineage"]["parents"][0]["model"] == "teacher"
    assert d["lineage"]["data_digest"] == data_digest
    assert sorted(f["role"] for f in d["files"]) == ["log", "weights"]
    assert hub.resolve("distill@staging").version == "2.0.0"
    stored = hub.root / "distill" / "threat_student_v2.0.0.onnx"
    assert stored.stat().st_ino == src.stat().st_ino  # --link
    r = ok(cli("register", "distill", sample_file(10, seed=4), "--bump", "major"))
    assert r.stdout.startswith("registered distill@3.0.0  sha256:")


def test_register_folder_and_progress_bar(cli, hub, tmp_path, monkeypatch) -> None:
    d = tmp_path / "adapter"
    (d / "sub").mkdir(parents=True)
    (d / "a.safetensors").write_bytes(os.urandom(1000))
    (d / "sub" / "cfg.json").write_text("{}")
    from click.testing import CliRunner

    from sentenialx.hub.cli import cli as root

    r = CliRunner().invoke(root, ["models", "register", "lora", str(d), "--hub", str(hub.root)],
                           env={"SENTENIALX_PROGRESS": "1"})
    assert r.exit_code == 0, r.output
    # A bar on stderr with bytes done/total (the rate column reads "?" when this quick).
    assert "register lora" in r.stderr and "1.0 kB" in r.stderr
    assert "registered lora@1.0.0" in r.stdout
    assert ok(cli("path", "lora")).stdout.strip() == str(hub.root / "lora" / "adapter_v1.0.0")


def test_read_commands_json(reg, hub) -> None:
    models = ok(reg("list", "--json")).json()
    assert models == [{"model": "distill", "versions": 2, "latest": "1.1.0",
                       "aliases": {"stable": "1.1.0"}}]
    assert "distill" in ok(reg("list")).stdout
    vs = ok(reg("versions", "distill", "--json")).json()
    assert [(v["version"], v["aliases"]) for v in vs] == [("1.0.0", []), ("1.1.0", ["stable"])]
    assert "1.1.0" in ok(reg("versions", "distill")).stdout
    show = ok(reg("show", "distill@1.0.0", "--json")).json()
    assert show["version"] == "1.0.0" and len(show["files"]) == 2
    assert show["metadata"]["metrics"] == {"accuracy": 0.9}
    assert "student_v1.0.0_report.md" in ok(reg("show", "distill@1.0.0")).stdout
    p = ok(reg("path", "distill@stable", "--json")).json()
    assert p == {"ref": "distill@stable", "path": str(hub.path("distill@stable"))}
    assert ok(reg("path", "distill@1.0.0")).stdout == f"{hub.path('distill@1.0.0')}\n"
    v = ok(reg("verify", "--json")).json()
    assert v["ok"] and v["files"] == 3 and v["hashed"] == 0
    v = ok(reg("verify", "distill@1.0.0", "--deep", "--json")).json()
    assert v["ok"] and v["hashed"] == 2 and v["deep"]
    assert ok(reg("verify", "--model", "distill", "--deep")).stdout.startswith("OK: 2 versions")
    al = ok(reg("alias", "list", "--json")).json()
    assert [(a["alias"], a["version"]) for a in al] == [("stable", "1.1.0")]
    hist = ok(reg("alias", "history", "distill", "--json")).json()
    assert [(m["previous"], m["version"]) for m in hist] == [(None, "1.1.0")]
    log = ok(reg("log", "--json")).json()
    assert [e["kind"] for e in log] == ["register", "register", "alias"]
    assert ok(reg("log", "--verify", "--json")).json()["ok"] is True
    last = ok(reg("log", "--model", "distill", "--limit", "1")).stdout.splitlines()
    assert len(last) == 1 and "alias" in last[0] and "distill@1.1.0" in last[0]
    d = ok(reg("diff", "distill@1.0.0", "distill@1.1.0", "--json")).json()
    assert d["metrics"] == {"accuracy": {"a": 0.9, "b": 0.95, "delta": pytest.approx(0.05)}}
    assert d["removed"] == ["report:report.md"] and len(d["changed"]) == 1
    assert "metric accuracy" in ok(reg("diff", "distill@1.0.0", "distill@1.1.0")).stdout
    f = ok(reg("fsck", "--json")).json()
    assert f["ok"] and f["versions"] == 2 and f["events"] == 3
    assert ok(reg("fsck")).stdout.startswith("OK: 2 versions")
    g = ok(reg("gc", "--json", "--dry-run", "--grace", "0s")).json()
    assert g == {"dry_run": True, "removed": [], "freed_bytes": 0, "stale_pending": [],
                 "kept_young": 0}


def test_write_commands(reg, hub, tmp_path, registry_ok) -> None:
    r = ok(reg("alias", "set", "distill@1.0.0", "staging", "--json"))
    assert r.json() == {"alias": "staging", "model": "distill", "version": "1.0.0",
                        "previous": None}
    ok(reg("alias", "set", "distill@1.1.0", "staging", "--expect", "1.0.0"))
    one_line_error(reg("alias", "set", "distill@1.0.0", "staging", "--expect", "1.0.0"), 9,
                   "another writer")
    assert ok(reg("alias", "rollback", "distill", "staging")).stdout.strip() == \
        "distill@staging -> 1.0.0"
    assert "removed distill@staging" in ok(reg("alias", "rm", "distill", "staging")).stdout
    assert "1.1.0" in ok(reg("alias", "history", "distill", "staging")).stdout
    assert ok(reg("revoke", "distill@1.0.0", "--reason", "bad data")).stdout.strip() == \
        "revoked distill@1.0.0"
    one_line_error(reg("path", "distill@1.0.0"), 3, "revoked", "bad data")
    assert ok(reg("show", "distill@1.0.0", "--include-revoked", "--json")).json()["revoked"]
    ok(reg("revoke", "distill@1.0.0", "--reason", "x", "--undo"))
    one_line_error(reg("delete", "distill@1.0.0"), 5, "--yes")
    one_line_error(reg("delete", "distill@1.1.0", "--yes"), 9, "stable")
    assert ok(reg("delete", "distill@1.0.0", "--yes")).stdout.strip() == "deleted distill@1.0.0"
    registry_ok(hub)
    out = tmp_path / "exported.json"
    ok(reg("export-registry", "-o", out))
    assert json.loads(out.read_text()) == hub.registry_view()
    (hub.root / "registry.json").write_text("{}")
    assert ok(reg("export-registry")).stdout.startswith("wrote ")
    registry_ok(hub)
    assert ok(reg("fsck")).exit_code == 0


def test_import_registry_command(cli, hub, tmp_path) -> None:
    seed = tmp_path / "seed"
    (seed / "distill").mkdir(parents=True)
    data = os.urandom(500)
    (seed / "distill" / "w.onnx").write_bytes(data)
    reg = {"distill": {"version": "1.2.0", "file": "distill/w.onnx",
                       "hash": hashlib.sha256(data).hexdigest(), "updated": "2024-01-01"}}
    (seed / "registry.json").write_text(json.dumps({**reg, "enc": {
        **reg["distill"], "hash": "0" * 64}}))
    err = one_line_error(cli("import-registry", seed / "registry.json"), 6, "w.onnx",
                         "nothing was imported")
    assert "sha256 mismatch" in err
    assert hub.models() == []
    (seed / "registry.json").write_text(json.dumps(reg))
    out = ok(cli("import-registry", seed, "--json")).json()
    assert [(v["model"], v["version"]) for v in out] == [("distill", "1.2.0")]
    assert "imported distill@1.2.0" in ok(cli("import-registry", seed)).stdout


@pytest.mark.parametrize(("args", "code", "needle"), [
    (("path", "nope"), 3, "not found"),
    (("show", "distill@9.9.9"), 3, "known versions"),
    (("versions", "nope"), 3, "nope"),
    (("alias", "rm", "distill", "canary"), 3, "not found"),
    (("alias", "rollback", "distill", "stable"), 3, "no earlier version"),
    (("path", "distill@sha256:zz"), 5, "digest"),
    (("path", "../etc"), 5, ""),
    (("path", "distill@^y"), 5, ""),
    (("revoke", "nope@1.0.0", "--reason", "x"), 3, ""),
    (("gc", "--grace", "soon"), 5, "--grace"),
    (("diff", "distill@1.0.0", "nope"), 3, ""),
    (("register", "a/b", "{src}"), 5, "path separator"),
    (("register", "distill", "{src}", "--version", "1.0"), 5, "semver"),
    (("register", "distill", "{src}", "--version", "1.0.0"), 4, "already exists"),
    (("register", "distill", "{src}", "--meta", "novalue"), 5, "KEY=VALUE"),
    (("register", "distill", "{src}", "--meta-file", "{notjson}"), 5, "not JSON"),
    (("register", "distill", "{src}", "--meta-file", "{missing}"), 5, "meta-file"),
    (("register", "distill", "{src}", "--attach", "report"), 5, "ROLE=PATH"),
    (("register", "distill", "{src}", "--attach", "weights={src}"), 5, "role"),
    (("register", "distill", "{missing}"), 5, "does not exist"),
    (("register", "distill", "{src}", "--parent", "nope@1.0.0"), 3, "nope"),
    (("register", "distill", "{src}", "--version", "9.0.0", "--bump", "patch"), 5, "either"),
])
def test_errors_are_one_line_with_distinct_exit_codes(reg, hub, tmp_path, snapshot, args, code,
                                                      needle) -> None:
    src = tmp_path / "new.onnx"
    src.write_bytes(b"new bytes")
    notjson = tmp_path / "meta.json"
    notjson.write_text("{'python': 'dict'}")
    fill = {"{src}": str(src), "{notjson}": str(notjson), "{missing}": str(tmp_path / "none")}
    argv = [fill.get(a, a) for a in args]
    before = snapshot(hub)
    one_line_error(reg(*argv), code, needle)
    assert snapshot(hub) == before


def test_verify_failure_exits_1_and_names_the_file(reg, hub) -> None:
    p = hub.root / "distill" / "student_v1.0.0_report.md"
    want = hashlib.sha256(p.read_bytes()).hexdigest()
    st = p.stat()
    os.chmod(p, 0o644)
    p.write_bytes(b"# tampered\n")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    got = hashlib.sha256(p.read_bytes()).hexdigest()
    r = reg("verify", "--deep")
    assert r.exit_code == 1 and r.exception is None
    assert "CHANGED" in r.stdout and "distill/student_v1.0.0_report.md" in r.stdout
    assert want in r.stdout and got in r.stdout
    j = reg("verify", "--deep", "--json")
    assert j.exit_code == 1
    probs = j.json()["problems"]
    assert [(x["kind"], x["path"], x["expected"], x["actual"]) for x in probs] == [
        ("changed", "distill/student_v1.0.0_report.md", want, got)]
    assert reg("fsck", "--json").exit_code == 1
    assert reg("fsck").stdout.splitlines()[-1].startswith("FAILED")


def test_log_verify_fails_on_edited_history(reg, hub) -> None:
    import sqlite3

    conn = sqlite3.connect(hub.root / "registry.db")
    conn.execute("UPDATE events SET actor='x' WHERE seq=2")
    conn.commit()
    conn.close()
    r = reg("log", "--verify")
    assert r.exit_code == 1 and "event 2" in r.stdout
    j = reg("log", "--verify", "--json")
    assert j.exit_code == 1 and j.json()["first_bad"] == 2


def test_usage_errors_exit_2(cli) -> None:
    assert cli("register").exit_code == 2
    assert cli("register", "m", "p", "--bump", "huge").exit_code == 2
    assert cli("no-such-command").exit_code == 2


def test_debug_shows_the_traceback(cli, hub) -> None:
    from click.testing import CliRunner

    from sentenialx.hub.cli import cli as root

    r = CliRunner().invoke(root, ["--debug", "models", "path", "nope", "--hub", str(hub.root)],
                           env={"SENTENIALX_DEBUG": None})
    assert isinstance(r.exception, E.NotFound)
    assert os.environ.get("SENTENIALX_DEBUG") is None


def test_hub_option_and_env(cli, hub, sample_file, tmp_path, monkeypatch) -> None:
    other = tmp_path / "other-hub"
    ok(cli("register", "m", sample_file(10), hub=other))
    assert ok(cli("list", "--json", hub=other)).json()[0]["model"] == "m"
    assert ok(cli("list", "--json")).json() == []
    from click.testing import CliRunner

    from sentenialx.hub.cli import cli as root

    r = CliRunner().invoke(root, ["models", "list", "--json"],
                           env={"SENTENIALX_HUB": str(other)})
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["model"] == "m"


# -- the real console script --------------------------------------------------------------


def run_console(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, SENTENIALX_PROGRESS="0")
    e.pop("SENTENIALX_HUB", None)
    e.update(env or {})
    return subprocess.run([str(CONSOLE), *args], capture_output=True, text=True, env=e,
                          timeout=60, check=False)


@pytest.fixture
def path_hub(hub, sample_file, tmp_path):
    for i, v in enumerate(["1.0.0", "1.2.0", "2.0.0-rc.1", "1.5.0"]):
        hub.register("distill", sample_file(64, seed=i, name="student.onnx"), version=v)
    hub.set_alias("distill@1.2.0", "stable")
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "a.bin").write_bytes(b"a")
    hub.register("lora", d)
    hub.register("distill", sample_file(64, seed=9, name="student.onnx"), version="1.6.0")
    hub.revoke("distill@1.6.0", reason="bad")
    return hub


def refs_for(h) -> list[str]:  # type: ignore[no-untyped-def]
    digest = h.resolve("distill@1.2.0").digest
    return ["distill", "distill@latest", "distill@stable", "distill@^1.0", "distill@~1.2",
            "distill@>=1.0,<1.5", "distill@1.0.0", "distill@2.0.0-rc.1",
            f"distill@sha256:{digest}", f"distill@sha256:{digest[:10]}", "lora", "lora@1.0.0"]


def test_console_script_path_matches_hub_path(path_hub) -> None:
    from sentenialx.hub._fastpath import fast_path

    assert CONSOLE.is_file()
    root = str(path_hub.root)
    for ref in refs_for(path_hub):
        expected = str(path_hub.path(ref))
        # The stdlib fast path answers by itself, and agrees with Hub.path...
        assert fast_path([ref, "--hub", root]) == expected, ref
        # ...and so does the installed console script, with --hub or $SENTENIALX_HUB.
        r = run_console("models", "path", ref, "--hub", root)
        assert (r.returncode, r.stdout, r.stderr) == (0, expected + "\n", ""), ref
    r = run_console("models", "path", "distill@stable", env={"SENTENIALX_HUB": root})
    assert r.stdout == str(path_hub.path("distill@stable")) + "\n"


def test_fast_path_does_not_load_the_full_stack(path_hub) -> None:
    code = ("import sys\nfrom sentenialx.cli import main\n"
            f"main(['models', 'path', 'distill@stable', '--hub', {str(path_hub.root)!r}])\n"
            "heavy = [m for m in ('sqlalchemy', 'click', 'rich', 'alembic') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(path_hub.path("distill@stable")), "HEAVY []"]


@pytest.mark.parametrize(("ref", "code"), [
    ("nope", 3), ("distill@9.9.9", 3), ("distill@1.6.0", 3), ("distill@staging", 3),
    ("distill@^7", 3), ("distill@^y", 5), ("a/b", 5),
])
def test_console_script_falls_back_to_the_full_cli_error(path_hub, cli, ref, code) -> None:
    from sentenialx.hub._fastpath import fast_path

    assert fast_path([ref, "--hub", str(path_hub.root)]) is None
    r = run_console("models", "path", ref, "--hub", str(path_hub.root))
    in_proc = cli("path", ref)
    assert r.returncode == in_proc.exit_code == code
    assert r.stdout == ""
    assert r.stderr == in_proc.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_console_script_on_a_missing_hub(tmp_path) -> None:
    r = run_console("models", "path", "distill", "--hub", str(tmp_path / "new-hub"))
    assert r.returncode == 3 and "not found" in r.stderr and "Traceback" not in r.stderr


def _all_commands():  # type: ignore[no-untyped-def]
    import click

    from sentenialx.hub.cli.models import models

    out = []
    for name, cmd in models.all_commands().items():
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in cmd.commands.items()]
        else:
            out.append((name, cmd))
    return out


def test_every_command_takes_hub_and_read_commands_take_json() -> None:
    cmds = dict(_all_commands())
    core = ("register", "list", "show", "versions", "path", "verify", "revoke", "delete", "log",
            "diff", "gc", "fsck", "export-registry", "import-registry")
    for name in [*core, *(n for n in cmds if n.startswith("alias "))]:
        assert "hub_path" in {p.name for p in cmds[name].params}, f"{name} has no --hub"
    for name in ("list", "show", "versions", "path", "verify", "log", "diff", "gc", "fsck",
                 "alias list", "alias history", "register", "import-registry"):
        assert "as_json" in {p.name for p in cmds[name].params}, f"{name} has no --json"
