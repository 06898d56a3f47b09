"""``python -m sentenialx``."""

from sentenialx.cli import main

main()
