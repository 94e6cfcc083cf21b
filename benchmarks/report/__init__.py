"""Tables and figures drawn from the store alone; nothing here reruns anything."""

from .summary import summarize, to_markdown

__all__ = ["summarize", "to_markdown"]
