"""The console: the cluster on one live web page, and the failback confirmation (R13)."""

from services.console.app import ConsoleService

__all__ = ["ConsoleService"]
