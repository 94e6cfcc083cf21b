"""``mixing``: train on Dt ∪ Dm, each example drawn with equal probability."""

from .base import Pool
from .erm import ERM


class Mixing(ERM):
    """Pool = Dt ∪ Dm (one copy of Dm)."""

    def pool(self) -> Pool:
        return Pool(meta_copies=1)
