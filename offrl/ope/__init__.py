"""Off-policy evaluation: a policy's value estimated from logged data, before it is deployed.

:class:`FQE` (Fitted Q Evaluation) is the estimator; :func:`evaluate_policies` runs it over a
set of checkpoints and reports each estimate beside the true discounted return (where the
environment exists) and the rank correlation between the two (:func:`spearman`).
"""

from offrl.ope.fqe import (
    FQE,
    FQEConfig,
    OPEReport,
    PolicyEstimate,
    discounted_return,
    effective_horizon,
    evaluate_policies,
    spearman,
)

__all__ = [
    "FQE",
    "FQEConfig",
    "OPEReport",
    "PolicyEstimate",
    "discounted_return",
    "effective_horizon",
    "evaluate_policies",
    "spearman",
]
