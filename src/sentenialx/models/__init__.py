"""Sentenial-X's model artifacts, backed by the hub (the seed's API, kept)."""
