"""dps-bench: data, models, scenarios, the harness, the results store, reports and the CLI.

Reaches the methods only through the registry in ``methods``.
"""
