"""`cnn` (conf/model/cnn.yaml): conv blocks, then an MLP head."""

from __future__ import annotations

from torch import nn

from ablate.models.blocks import Activation, conv_block, hidden_norm_and_activation, input_batchnorm
from ablate.schema.fields import Bool, NonNegativeInt, OptionalBool, PositiveInt, PositiveInts
from ablate.techniques.norm import Norm
from ablate.techniques.norm import none as no_norm


class CNN(nn.Module):
    """Conv blocks with the given channel widths, then flatten -> hidden -> classes."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        channels: PositiveInts = (32, 64),
        hidden: NonNegativeInt = 128,
        activation: Activation = "relu",
        pool: Bool = True,
        norm: Norm | None = None,
        dropout: float = 0.0,
        dropout2d: float = 0.0,
        input_dropout: float = 0.0,
        head_norm: Bool = False,
        convs: PositiveInt = 1,
        input_bn: OptionalBool = None,
    ) -> None:
        super().__init__()
        norm = norm or no_norm()
        # Dropout on the pixels (Srivastava et al. 2014); no parameters, so state_dict keys hold.
        self.input_dropout = nn.Dropout(input_dropout) if input_dropout > 0 else nn.Identity()
        # Empty when off: no state_dict keys, so earlier checkpoints still load.
        self.input_bn = nn.Sequential(*input_batchnorm(in_channels, input_bn))
        blocks, c_prev, (h, w) = [], in_channels, image_size
        for c in channels:
            blocks.append(conv_block(c_prev, c, norm, activation, pool, dropout2d, convs))
            c_prev = c
            if pool:
                h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"model.channels has {len(channels)} pooled blocks, too many for {image_size} images"
            )
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Flatten()]
        features = c_prev * h * w
        if hidden:
            head += [nn.Linear(features, hidden, bias=not (head_norm and norm.bias_redundant))]
            head += hidden_norm_and_activation(hidden, norm if head_norm else no_norm(), activation)
            features = hidden
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(features, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x):
        return self.head(self.features(self.input_dropout(self.input_bn(x))))
