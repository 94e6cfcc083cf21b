"""Tables and figures drawn from the store alone; nothing here reruns anything."""

from .backfill import fill_weights_status
from .summary import summarize, to_markdown

__all__ = ["fill_weights_status", "summarize", "to_markdown"]
