"""Small pieces of the server: the error table, ranges, logs, charts, markdown, migration."""

from __future__ import annotations

import json

import pytest

from sentenialx.hub import errors as E
from sentenialx.hub.server._charts import Node, line_chart, lineage_graph, nice_ticks
from sentenialx.hub.server._download import parse_range
from sentenialx.hub.server._render import flatten_metrics, group_series, parse_log, render_markdown
from sentenialx.hub.server.app import ERROR_STATUS, status_for


def test_one_error_table_covers_every_hub_error():
    assert status_for(E.InvalidName("x")) == 400
    assert status_for(E.InvalidRef("x")) == 400
    assert status_for(E.NotFound("x")) == 404
    assert status_for(E.Unauthenticated("x")) == 401
    assert status_for(E.PermissionDenied("x")) == 403
    assert status_for(E.TooLarge("x")) == 413
    assert status_for(E.Conflict("x")) == 409
    assert status_for(E.StoreUnavailable("x")) == 503
    assert status_for(E.MissingDependency("onnx", "onnx")) == 501
    from sentenialx.hub.cli import EXIT_CODES

    for cls in (c for c in EXIT_CODES if issubclass(c, E.HubError)):
        assert any(c in ERROR_STATUS for c in cls.__mro__), cls


def test_parse_range():
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=90-500", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)
    assert parse_range("bytes=100-", 100) == "unsatisfiable"
    assert parse_range("bytes=-0", 100) == "unsatisfiable"
    for bad in ("bytes=5-1", "items=0-1", "bytes=0-1,3-4", "bytes=-", "bytes=a-b"):
        assert parse_range(bad, 100) is None


def test_parse_log_and_groups():
    lines = [json.dumps({"step": i, "loss": 1 / (i + 1), "accuracy": i / 10, "lr": 0.1})
             for i in range(10)]
    data = ("\n".join(lines[:5]) + "\nnot json\n[1,2]\n" + "\n".join(lines[5:])).encode()
    series, bad = parse_log(data)
    assert bad == 2 and set(series) == {"loss", "accuracy", "lr"}
    assert series["loss"][0] == (0.0, 1.0) and len(series["loss"]) == 10
    titles = [t for t, _ in group_series(series)]
    assert titles == ["Loss", "Accuracy", "lr"]
    long = "\n".join(json.dumps({"step": i, "loss": 1.0}) for i in range(10_000)).encode()
    assert len(parse_log(long)[0]["loss"]) <= 2001
    assert parse_log(b'{"loss": NaN}\n{"loss": 1e999}\n{"loss": true}')[0] == {}
    assert flatten_metrics({"a": 1, "b": {"c": 2.5, "d": "x"}, "e": True}) == {"a": 1.0, "b.c": 2.5}


def test_charts_escape_and_scale():
    svg = line_chart({"<b>loss</b>": [(0, 1.0), (1, 0.5)]}, title='t"<x>')
    assert "<b>" not in svg and "&lt;b&gt;loss" in svg and 'data-points="2"' in svg
    assert "no data" in line_chart({}, title="empty")
    assert line_chart({"a": [(0, 5.0)]}, title="one point").count("<circle") == 1
    assert nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(3, 3)
    g = lineage_graph([Node("a", "teacher@1", depth=-1, href="/x"), Node("b", "<s>", current=True)],
                      [("a", "b", "teacher")])
    assert 'data-nodes="2"' in g and "&lt;s&gt;" in g and 'href="/x"' in g


def test_markdown_is_sanitised():
    html = render_markdown(
        "# Hi\n\n[a](javascript:alert(1)) [b](https://example.com)\n\n![c](c.png)\n\n"
        "<script>alert(1)</script>\n<img src=x onerror=alert(1)>\n"
        '<a href="JaVaScRiPt:alert(1)">x</a><svg onload=alert(1)></svg><style>*{}</style>',
        resolve_src=lambda s: "/view/" + s if s == "c.png" else None)
    assert "<h1>Hi</h1>" in html
    for bad in ("<script", "onerror", 'href="javascript', "onload", "<svg", "<style",
                "alert(1)</"):
        assert bad not in html.lower(), bad
    assert 'src="/view/c.png"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert '<a href="https://example.com"' in html


def test_migration_0002_upgrades_an_old_hub(tmp_path):
    import sqlite3

    from alembic import command
    from alembic.config import Config

    from sentenialx.hub.hub import Hub
    from sentenialx.hub.index import SCHEMA_HEAD

    hub = Hub(tmp_path / "hub")
    hub.tokens.create("old", scope="read")
    cfg = Config()
    import os

    from sentenialx.hub.index import sql

    cfg.set_main_option("script_location",
                        os.path.join(os.path.dirname(sql.__file__), "migrations"))
    with hub.index.engine.connect().execution_options(hub_write=True) as conn:
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
    hub.close()
    db = sqlite3.connect(tmp_path / "hub" / "registry.db")
    assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    assert not db.execute("SELECT name FROM sqlite_master WHERE name='tokens'").fetchall()
    db.close()
    hub = Hub(tmp_path / "hub")  # opening upgrades
    assert SCHEMA_HEAD == "0005"
    db = sqlite3.connect(tmp_path / "hub" / "registry.db")
    assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("0005",)
    assert db.execute("SELECT name FROM sqlite_master WHERE name='ix_events_kind_seq'").fetchall()
    assert db.execute("SELECT name FROM sqlite_master WHERE name='idempotency'").fetchall()
    db.close()
    assert hub.tokens.list() == []
    hub.tokens.create("new", scope="admin")
    assert [t.name for t in hub.tokens.list()] == ["new"]
    hub.close()


@pytest.mark.parametrize("scope,need,ok", [("read", "read", True), ("read", "write", False),
                                           ("write", "write", True), ("write", "admin", False),
                                           ("admin", "admin", True)])
def test_scopes_nest(scope, need, ok):
    from sentenialx.hub._tokens import Token

    t = Token(name="t", scope=scope)
    if ok:
        t.check(need, "distill")
    else:
        with pytest.raises(E.PermissionDenied):
            t.check(need, "distill")
