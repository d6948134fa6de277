"""Search: budgets, Optuna studies, evaluators and Pareto fronts."""
