"""The index: where versions, aliases and events are recorded (SQL, see ``sql.py``)."""

SCHEMA_HEAD = "0005"
"""The Alembic revision the code expects; kept here so fast paths need no SQLAlchemy."""
