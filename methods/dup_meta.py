"""``dup_meta``: Dt plus copies of Dm until the copies are as many as |Dt|."""

from .base import Pool
from .erm import ERM


class DupMeta(ERM):
    """Pool = Dt ∪ c·Dm with c = max(1, round(N_t / N_m)), so about half of each batch is from Dm."""

    def pool(self) -> Pool:
        return Pool(meta_copies=max(1, round(self.ctx.n_train / self.ctx.n_meta)))
