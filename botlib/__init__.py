"""botlib: an ML research lab for crypto trading."""

__version__ = "0.1.0"
__all__ = ["__version__"]
