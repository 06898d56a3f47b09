"""The index: where versions, aliases and events are recorded (SQL, see ``sql.py``)."""

SCHEMA_HEAD = "0004"
"""The Alembic revision the code expects; kept here so fast paths need no SQLAlchemy."""
