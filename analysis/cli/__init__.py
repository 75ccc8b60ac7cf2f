"""The ``python -m analysis`` command line (imports the library; the library never imports it)."""

from analysis.cli.main import main

__all__ = ["main"]
