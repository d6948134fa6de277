"""Analytical design: maximise a training-free score under budgets by mathematical programming.

``design(space, budget)`` builds DeepMAD-style integer programmes over the structural choices of a space
(stage widths, depths, and each layer's mixer/kernel/ratio) and solves them with scipy's MILP solver
(HiGHS); ``evolve(space, budget)`` is the evolutionary baseline on the same score and budgets.
"""

from nas.design.evolution import EvolutionResult, evolve
from nas.design.programme import (
    Design,
    DesignResult,
    check_budget,
    default_rho,
    design,
)

__all__ = [
    "Design",
    "DesignResult",
    "EvolutionResult",
    "check_budget",
    "default_rho",
    "design",
    "evolve",
]
