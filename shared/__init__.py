"""The common code of every blaze-cluster service: config, messages, subjects, the bus."""

__version__ = "0.1.0"

__all__ = ["__version__"]
