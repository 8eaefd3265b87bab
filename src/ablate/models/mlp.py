"""`mlp` (conf/model/mlp.yaml): flatten -> `depth` x [Linear, norm, activation, Dropout] -> Linear.

The papers' own small experiments: Ioffe & Szegedy 2015 (Sec. 4.1, 3 x 100 sigmoid units, MNIST),
Srivastava et al. 2014 (MNIST MLPs with dropout, input dropout and max-norm), Glorot & Bengio 2010.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field
from torch import nn

from ablate.models.blocks import Activation, dense_block, input_batchnorm
from ablate.schema.fields import OptionalBool, OptionalNonNegativeInt, allowed
from ablate.techniques.norm import Norm
from ablate.techniques.norm import none as no_norm

log = logging.getLogger(__name__)
Widths = Annotated[
    Annotated[int, Field(gt=0)] | Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)],
    allowed("a positive integer or a non-empty list of them"),
]


def hidden_widths(depth: int | None, width: int | Sequence[int]) -> list[int]:
    """The hidden layers' widths: `depth` x `width`, or the list `width` (then depth is its length)."""
    if isinstance(width, int):
        if depth is None:
            raise ValueError("model.depth=null needs a list model.width: set model.depth=<n>")
        return [width] * depth
    widths = list(width)
    if depth is not None and depth != len(widths):
        raise ValueError(
            f"model.depth={depth} disagrees with model.width={widths} (a list sets the depth): "
            f"set model.depth={len(widths)} or model.depth=null"
        )
    return widths


class MLP(nn.Module):
    """A fully connected net on the flattened image; every norm but `instance` normalizes features.

    BatchNorm normalizes each feature over the batch, LayerNorm each sample over its features,
    GroupNorm each sample over groups of features (techniques/norm.py:AsVectors); InstanceNorm has no
    spatial extent to normalize over on a feature vector, so it is refused with a one-line error.
    """

    stackable = True  # its K seeds can train as one stacked model (ablate.group.stack)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        depth: OptionalNonNegativeInt = 3,
        width: Widths = 128,
        activation: Activation = "relu",
        norm: Norm | None = None,
        dropout: float = 0.0,
        dropout2d: float = 0.0,
        input_dropout: float = 0.0,
        input_bn: OptionalBool = None,
    ) -> None:
        super().__init__()
        norm = norm or no_norm()
        if dropout2d > 0:  # reg=dropout sets it for conv nets; an MLP has no feature maps
            log.info("model=mlp: reg.dropout2d=%g has no feature maps to act on here", dropout2d)
        layers: list[nn.Module] = [*input_batchnorm(in_channels, input_bn), nn.Flatten()]
        if input_dropout > 0:  # Srivastava et al. 2014: p=0.2 on the pixels
            layers.append(nn.Dropout(input_dropout))
        features = in_channels * image_size[0] * image_size[1]
        for w in hidden_widths(depth, width):
            layers += dense_block(features, w, norm, activation, dropout)
            features = w
        layers.append(nn.Linear(features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
