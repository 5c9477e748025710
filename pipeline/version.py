"""The release's version, in this one place: the package metadata reads it (pyproject.toml, dynamic version)."""

__version__ = "0.1.0"
