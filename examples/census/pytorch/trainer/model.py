"""The census DNN: indicator and embedded categoricals plus standardised numerics.

The module takes already-encoded inputs (vocabulary ids and raw numerics) so that the same
forward pass runs in training and inside the exported ONNX graph, whose string preprocessing
produces exactly these two tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trainer import data

#: Capital gains and losses span 0..99999 with a spike at 0: log1p tames the scale.
LOG_COLUMNS = ("capital_gain", "capital_loss")


def hidden_units(first_layer_size: int, num_layers: int, scale_factor: float) -> list[int]:
    """The census sample's layer sizes: geometric shrinking, never below 2 units."""
    return [max(2, int(first_layer_size * scale_factor**i)) for i in range(num_layers)]


class NumericScaler(nn.Module):
    """Imputes NaN with the training mean, log1p's the capital columns, standardises.

    Statistics are buffers, so they travel with ``state_dict``, DDP's buffer broadcast and
    the ONNX export.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("fill", torch.zeros(width))
        self.register_buffer("log_mask", torch.zeros(width, dtype=torch.bool))
        self.register_buffer("center", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))

    def fit(self, raw: np.ndarray) -> None:
        """Set the statistics from raw training numerics ``[N, width]`` (NaN = missing)."""
        log_mask = np.array([c in LOG_COLUMNS for c in data.NUMERIC_COLUMNS])
        fill = np.nan_to_num(np.nanmean(raw, axis=0), nan=0.0)
        filled = np.where(np.isnan(raw), fill, raw)
        shaped = np.where(log_mask, np.log1p(np.clip(filled, 0.0, None)), filled)
        std = shaped.std(axis=0)
        self.fill.copy_(torch.as_tensor(fill, dtype=torch.float32))
        self.log_mask.copy_(torch.as_tensor(log_mask))
        self.center.copy_(torch.as_tensor(shaped.mean(axis=0), dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(np.where(std > 0, std, 1.0), dtype=torch.float32))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        x = torch.where(torch.isnan(raw), self.fill, raw)
        x = torch.where(self.log_mask, torch.log1p(torch.clamp(x, min=0.0)), x)
        return (x - self.center) / self.scale


class CensusDNN(nn.Module):
    """Maps ``ids`` int64 ``[N, 8]`` and ``numerics`` float32 ``[N, 5]`` to 2-class logits.

    Column orders are :data:`trainer.data.CATEGORICAL_COLUMNS` and
    :data:`trainer.data.NUMERIC_COLUMNS`; id 0 is "unknown" in every column.
    """

    def __init__(self, hidden: Sequence[int], embedding_size: int = 8) -> None:
        super().__init__()
        self.indicator_sizes = [len(data.VOCABULARIES[c]) + 1 for c in data.INDICATOR_COLUMNS]
        self.embeddings = nn.ModuleList(
            nn.Embedding(len(data.VOCABULARIES[c]) + 1, embedding_size)
            for c in data.EMBEDDING_COLUMNS
        )
        self.scaler = NumericScaler(len(data.NUMERIC_COLUMNS))
        width = (
            sum(self.indicator_sizes)
            + embedding_size * len(data.EMBEDDING_COLUMNS)
            + len(data.NUMERIC_COLUMNS)
        )
        layers: list[nn.Module] = []
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, len(data.LABELS)))
        self.network = nn.Sequential(*layers)

    def forward(self, ids: torch.Tensor, numerics: torch.Tensor) -> torch.Tensor:
        parts = [
            F.one_hot(ids[:, i], size).to(numerics.dtype)
            for i, size in enumerate(self.indicator_sizes)
        ]
        offset = len(self.indicator_sizes)
        parts += [emb(ids[:, offset + i]) for i, emb in enumerate(self.embeddings)]
        parts.append(self.scaler(numerics))
        return self.network(torch.cat(parts, dim=1))


class ProbabilityHead(nn.Module):
    """Wraps a :class:`CensusDNN` so that it returns softmax probabilities (for export)."""

    def __init__(self, model: CensusDNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, numerics: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(ids, numerics), dim=1)
