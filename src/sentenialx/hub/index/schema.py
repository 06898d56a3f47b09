"""The index's tables (SQLAlchemy Core). Migrations in ``migrations/versions`` create them.

The current schema revision is :data:`HEAD`; :mod:`sentenialx.hub.index.sql` checks it
on open and runs Alembic only when the database is behind.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from sentenialx.hub.index import SCHEMA_HEAD  # noqa: E402 - after the SQLAlchemy block

HEAD = SCHEMA_HEAD

metadata = MetaData()

hub_state = Table(
    "hub_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", BigInteger, nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("hub_id", String(64), nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(100), nullable=False),
    Column("version", String(200), nullable=False),
    Column("major", Integer, nullable=False),
    Column("minor", Integer, nullable=False),
    Column("patch", Integer, nullable=False),
    Column("is_release", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # pending | ready
    Column("revoked", Boolean, nullable=False, default=False),
    Column("revoke_reason", Text, nullable=True),
    Column("digest", String(64), nullable=True),
    Column("stem", String(300), nullable=False),
    Column("layout", String(8), nullable=False),  # file | dir
    Column("meta", Text, nullable=False),
    Column("lineage", Text, nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    # Version.index_key(): byte order is semver precedence (migration 0005).
    Column("sort_key", String(700).with_variant(String(700, collation="C"), "postgresql"),
           nullable=True),
    UniqueConstraint("model", "version", name="uq_versions_model_version"),
)
Index("ix_versions_model_order", versions.c.model, versions.c.major, versions.c.minor,
      versions.c.patch)
Index("ix_versions_digest", versions.c.digest)
Index("ix_versions_model_sort", versions.c.model, versions.c.sort_key, versions.c.id)

files = Table(
    "files",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("path", String(1000), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("role", String(16), nullable=False),
)
Index("ix_files_sha256", files.c.sha256)

aliases = Table(
    "aliases",
    metadata,
    Column("model", String(100), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version", String(200), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(100), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("version", String(200), nullable=True),
    Column("previous", String(200), nullable=True),
    Column("ts", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
)
Index("ix_alias_history_model_alias", alias_history.c.model, alias_history.c.alias)

events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("model", String(100), nullable=False),
    Column("version", String(200), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_events_kind_seq", events.c.kind, events.c.seq)

stat_cache = Table(
    "stat_cache",
    metadata,
    Column("path", String(1200), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("ino", BigInteger, nullable=False),
    Column("ctime_ns", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
)

# API tokens of the HTTP server (migration 0002). Only the sha256 of a token is kept;
# a revoked token keeps its row (and its name) so history stays attributable.
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("scope", String(16), nullable=False),  # read | write | admin
    Column("models", Text, nullable=True),  # JSON list of model-name patterns; NULL = all
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", String(40), nullable=True),
    Column("revoked_at", String(40), nullable=True),
    Column("last_used_at", String(40), nullable=True),
    UniqueConstraint("name", name="uq_tokens_name"),
    UniqueConstraint("token_sha256", name="uq_tokens_sha256"),
)

# Idempotency keys of registrations (migration 0004). A row is written in the transaction
# that completes its version, so a key names a version only once that version is ready;
# deleting the version deletes its key, and a retry then registers afresh.
idempotency = Table(
    "idempotency",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id", ondelete="CASCADE"), nullable=False),
    Column("model", String(100), nullable=False),
    Column("version", String(200), nullable=False),
    Column("request_digest", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
)
