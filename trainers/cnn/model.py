"""The model: SmallCNN, two conv blocks, adaptive pooling (so 8x8 and 28x28 inputs both work)
and a linear head.

One definition, imported by train.py (which trains it) and by inference.py (which rebuilds it
from model_config.json to serve it). train.py ships this file beside inference.py in every
model's `code/` folder, the folder SageMaker's PyTorch serving container puts on sys.path
before it imports the handler; so it needs torch only.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

# The constructor's arguments, as model_config.json records them.
ARCHITECTURE_KWARGS = ("in_channels", "num_classes", "conv_channels", "kernel_size", "dropout",
                       "batch_norm", "pool_size")


class SmallCNN(nn.Module):
    def __init__(self, in_channels=1, num_classes=10, conv_channels=16, kernel_size=5,
                 dropout=0.1, batch_norm=True, pool_size=4):
        super().__init__()
        c1, c2 = conv_channels, 2 * conv_channels

        def block(cin, cout):
            layers = [nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2,
                                bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            return nn.Sequential(*layers)

        self.block1 = block(in_channels, c1)
        self.block2 = block(c1, c2)
        self.pool = nn.AdaptiveMaxPool2d(pool_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c2 * pool_size * pool_size, num_classes)

    def forward(self, x):
        x = self.block1(x)
        x = F.max_pool2d(x, 2)            # 8x8 -> 4x4, 28x28 -> 14x14
        x = self.block2(x)
        x = self.pool(x)                  # -> pool_size x pool_size whatever the input size
        x = self.dropout(torch.flatten(x, 1))
        return self.head(x)
