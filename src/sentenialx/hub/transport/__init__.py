"""Transports a Hub can run over besides SQL and a folder: a served hub over HTTP (``http``)."""
