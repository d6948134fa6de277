"""Analytic costs of archs (params, MACs, memory) and the fvcore reference they are checked against."""
from nas.cost.count import ArchCost, count

__all__ = ["ArchCost", "count"]
