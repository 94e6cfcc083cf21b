"""Models trained from scratch by the scenarios."""

from .lenet import LeNet, num_parameters

__all__ = ["LeNet", "num_parameters"]
