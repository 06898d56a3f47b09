"""Sentenial-X: ML threat detection, with its models kept in a verifiable hub."""

__version__ = "0.1.0"
