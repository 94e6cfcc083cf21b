"""``train_only``: train on Dt alone, ignoring Dm."""

from .erm import ERM


class TrainOnly(ERM):
    """Pool = Dt (the default)."""
