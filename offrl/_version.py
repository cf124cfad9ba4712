"""The package version (ground floor: modules record it without importing the ``offrl``
aggregator)."""

__version__ = "0.1.0"
