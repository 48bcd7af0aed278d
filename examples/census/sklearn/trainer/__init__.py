"""Census income gradient-boosting trainer (scikit-learn): ``python -m trainer.task``."""
