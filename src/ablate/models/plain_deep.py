"""`plain_deep` (conf/model/plain_deep.yaml): N identical 3x3 convs, no shortcuts (He et al. 2015)."""

from __future__ import annotations

from torch import nn

from ablate.models.blocks import Activation, conv_block
from ablate.schema.fields import NonNegativeInt, PositiveInt
from ablate.techniques.norm import Norm
from ablate.techniques.norm import none as no_norm


class PlainDeep(nn.Module):
    """`depth` 3x3 conv layers of equal width without shortcuts (He et al. 2015's plain nets), GAP, linear."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        depth: PositiveInt = 20,
        width: PositiveInt = 16,
        activation: Activation = "relu",
        pool_stages: NonNegativeInt = 2,
        norm: Norm | None = None,
        dropout: float = 0.0,
        dropout2d: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        norm = norm or no_norm()
        # Dropout on the pixels (Srivastava et al. 2014); no parameters, so state_dict keys hold.
        self.input_dropout = nn.Dropout(input_dropout) if input_dropout > 0 else nn.Identity()
        # Max-pool after evenly spaced layers so deep nets stay affordable on CPU.
        pool_after = {round(depth * (k + 1) / (pool_stages + 1)) - 1 for k in range(pool_stages)}
        layers, c_prev = [], in_channels
        for i in range(depth):
            layers.append(conv_block(c_prev, width, norm, activation, i in pool_after, dropout2d))
            c_prev = width
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x):
        return self.head(self.features(self.input_dropout(x)))
