"""Prepared measurement scripts for a machine with an accelerator (they also run on a CPU)."""
