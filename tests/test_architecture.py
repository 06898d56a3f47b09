"""The layering of DESIGN.md, written as import-linter contracts in pyproject.toml, holds."""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

EXPECTED_CONTRACTS = {
    "layers",
    "frontends-use-the-hub",
    "inference-without-training",
    "independent-backends",
    "acyclic-hub",
}


def _config() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        cfg: dict[str, Any] = tomllib.load(f)["tool"]["importlinter"]
    return cfg


def _contracts() -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in _config()["contracts"]}


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("lint-imports")
    cmd = [str(script)] if script.is_file() else [
        sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([*cmd, "--no-cache", "--no-logo", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_lint_imports_keeps_every_contract() -> None:
    r = _lint_imports()
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(EXPECTED_CONTRACTS)} kept, 0 broken" in r.stdout, r.stdout


def test_the_contracts_the_design_asks_for_are_configured() -> None:
    cfg = _config()
    assert cfg["root_package"] == "sentenialx"
    assert cfg["include_external_packages"] is True  # sqlalchemy/boto3 are forbidden by name
    assert cfg["exclude_type_checking_imports"] is True
    contracts = _contracts()
    assert set(contracts) == EXPECTED_CONTRACTS
    assert contracts["inference-without-training"]["source_modules"] == ["sentenialx.pipeline"]
    assert "sentenialx.orchestrator" in contracts["inference-without-training"]["forbidden_modules"]
    front = set(contracts["frontends-use-the-hub"]["source_modules"])
    assert {"sentenialx.hub.cli", "sentenialx.hub.server"} <= front
    assert set(contracts["frontends-use-the-hub"]["forbidden_modules"]) >= {
        "sentenialx.hub.index", "sentenialx.hub.store", "sqlalchemy", "boto3", "botocore"}
    assert contracts["acyclic-hub"]["type"] == "acyclic_siblings"


def _layered_modules() -> list[str]:
    names = []
    for layer in _contracts()["layers"]["layers"]:
        for item in layer.replace("|", ":").split(":"):
            names.append(item.strip().strip("()"))
    return names


def test_every_top_level_module_sits_in_exactly_one_layer() -> None:
    # import-linter ignores modules a layers contract does not name, so a new module of
    # sentenialx or sentenialx.hub would escape the layering unless placed in it.
    layered = _layered_modules()
    assert len(layered) == len(set(layered)), sorted(n for n in layered if layered.count(n) > 1)
    found = set()
    for package, path in (("sentenialx", SRC / "sentenialx"), ("sentenialx.hub", SRC / "sentenialx" / "hub")):
        for info in pkgutil.iter_modules([str(path)]):
            name = f"{package}.{info.name}"
            if name != "sentenialx.hub":
                found.add(name)
    missing = sorted(found - set(layered))
    assert not missing, f"modules in no layer of pyproject.toml's layers contract: {missing}"
    optional = {n for layer in _contracts()["layers"]["layers"] for n in
                (i.strip() for i in layer.replace("|", ":").split(":")) if n.startswith("(")}
    stale = sorted(set(layered) - found - {n.strip("()") for n in optional})
    assert not stale, f"the layers contract names modules that do not exist: {stale}"


def test_a_broken_layer_is_reported(tmp_path: Path) -> None:
    # The same checker, fed a contract the code breaks, must fail: the pass above means something.
    bad = tmp_path / "broken.toml"
    bad.write_text(
        '[tool.importlinter]\nroot_package = "sentenialx"\n'
        '[[tool.importlinter.contracts]]\nname = "errors above hub"\ntype = "layers"\n'
        'layers = ["sentenialx.hub.errors", "sentenialx.hub.hub"]\n', encoding="utf-8")
    r = _lint_imports(str(bad))
    assert r.returncode != 0, r.stdout
    assert "errors above hub BROKEN" in r.stdout, r.stdout


def test_the_lazy_public_names_are_also_imported_for_type_checkers() -> None:
    # `from sentenialx.hub import Hub` must type as Hub, not object: every lazily loaded
    # name has a matching import in the package's TYPE_CHECKING block, and no more.
    import ast

    import sentenialx.hub as pkg

    tree = ast.parse((SRC / "sentenialx" / "hub" / "__init__.py").read_text(encoding="utf-8"))
    checked: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom) and imp.module:
                    checked.update({a.name: imp.module for a in imp.names})
    lazy = pkg._LAZY
    assert checked == lazy
    assert set(lazy) <= set(pkg.__all__)
    assert pkg.Hub.__name__ == "Hub"


FRONT_END_SOURCES = ("sentenialx/hub/server", "sentenialx/hub/cli", "sentenialx/pipeline",
                     "sentenialx/models", "sentenialx/orchestrator", "sentenialx/demo.py",
                     "sentenialx/cli.py", "sentenialx/mlflow_plugin")
_REACH_PAST = re.compile(r"\b(?:hub|self\.hub|src|dst|source|dest)\.(?:index|store|core|local|cache)\b")


def test_front_ends_never_reach_past_the_facade() -> None:
    # Import contracts cannot see attribute access: a front end holding a Hub could still
    # read hub.index or hub.store and bypass the rules. Every such read is a facade verb.
    hits = []
    for rel in FRONT_END_SOURCES:
        base = SRC / rel
        for path in ([base] if base.is_file() else sorted(base.rglob("*.py"))):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _REACH_PAST.search(line.split("#", 1)[0]):
                    hits.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not hits, "front ends reaching past the Hub:\n" + "\n".join(hits)
    assert _REACH_PAST.search("x = hub.store.open_read(k)")  # the pattern itself catches one
