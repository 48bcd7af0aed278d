"""Hyperparameter tuning: search spaces and the algorithms that propose trials.

* :mod:`~mlengine.tuning.space` — :class:`SearchSpace`, built from a HyperparameterSpec's
  params: encoding into the unit cube, sampling, the strings the trainer receives, identity.
* :mod:`~mlengine.tuning.base` — the :class:`Suggester` contract and :func:`make_suggester`.
* :mod:`~mlengine.tuning.random_search`, :mod:`~mlengine.tuning.grid` and
  :mod:`~mlengine.tuning.bayesian` — the three ``algorithm`` values of the v1 API.

Suggesters are stateless: the caller passes the finished trials and the running ones each
time, so a tuning job survives a server restart.  See ``docs/tuning.md``.
"""

from mlengine.tuning.base import Suggester, Trial, make_suggester
from mlengine.tuning.grid import GridSearch
from mlengine.tuning.random_search import RandomSearch
from mlengine.tuning.space import Dimension, DimensionKind, Params, SearchSpace

__all__ = [
    "Dimension",
    "DimensionKind",
    "GridSearch",
    "Params",
    "RandomSearch",
    "SearchSpace",
    "Suggester",
    "Trial",
    "make_suggester",
]
