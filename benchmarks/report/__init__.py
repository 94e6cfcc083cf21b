"""Tables and figures drawn from the store alone; nothing here reruns anything."""

from .backfill import fill_weights_status, summarize_store
from .summary import side_by_side, summarize, to_markdown

__all__ = ["fill_weights_status", "side_by_side", "summarize", "summarize_store", "to_markdown"]
