"""The package version (a leaf module: io records it in every file it writes)."""

__version__ = "0.1.0"
