"""The trainer SDK: what user code imports inside a training replica.

Standard library only, and nothing from the rest of mlengine: it runs inside the user's
process, possibly on a machine where only this module is installed.

    from mlengine import trainer
    ctx = trainer.context()              # who am I in the cluster?
    trainer.report_metric("accuracy", 0.85, step=1000)
    trainer.init_torch_distributed()     # DDP from MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK
"""

from mlengine.trainer._context import TrainerContext, context
from mlengine.trainer._distributed import init_torch_distributed
from mlengine.trainer._metrics import (
    DEFAULT_METRIC_FILE,
    DEFAULT_METRIC_TAG,
    MetricReporter,
    report_metric,
)

__all__ = [
    "DEFAULT_METRIC_FILE",
    "DEFAULT_METRIC_TAG",
    "MetricReporter",
    "TrainerContext",
    "context",
    "init_torch_distributed",
    "report_metric",
]
