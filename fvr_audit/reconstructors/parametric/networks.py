"""The three parametric reconstructors of the paper (section IV) as torch modules: R(v) -> face.

Every generator maps an L2-normalised feature vector [N, D] to float32 [N, 3, S, S] pixel values
in 0..255 of the canonical frame (a dlib chip with padding 0.5, see
:mod:`fvr_audit.alignment.canonical`) at ``S = OUTPUT_SIZE``; the runtime resizes it to the 200 px
frame, from which each recognizer takes its crop. The networks are sized for training on LFW with
two CPU cores (a few million parameters, 64 px output); the design choices the original papers
leave open are stated where they are made.

Only the training and export code imports this module; scanning runs the exported ONNX files.
"""

from __future__ import annotations

import torch
from torch import nn

#: Side of the generated canonical frame (the 200 px frame downsampled 3.125x).
OUTPUT_SIZE = 64
#: Channels at 4, 8, 16, 32 and 64 px.
WIDTHS = (256, 160, 96, 48, 24)


def _to_pixels(x: torch.Tensor) -> torch.Tensor:
    # tanh keeps gradients alive at the ends of the range, unlike a clamp.
    return (torch.tanh(x) + 1.0) * 127.5


class FaceHead(nn.Module):
    """Features (and v) -> pixels. Three design choices, all to make a small network trained for a
    few CPU hours draw faces that recognizers other than F see too:

    * a linear branch from v straight to the image (pre-tanh), initialised by ridge regression
      on the training faces (:meth:`init_linear`), so training starts from the best linear
      reconstruction and the convolutional path learns what a linear map cannot;
    * a learned bias image (the mean training face after :meth:`init_linear`);
    * a fixed [1, 2, 1] x [1, 2, 1] / 16 blur after the tanh. It has zero gain at the 64 px
      Nyquist frequency, so the checkerboard patterns that a feature loss through one recognizer
      otherwise learns to exploit (they fool F and nobody else) cannot be drawn.
    """

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 3, 3, 1, 1)
        nn.init.zeros_(self.conv.weight)  # the network starts as the linear reconstruction
        nn.init.zeros_(self.conv.bias)
        self.linear = nn.Linear(dim, 3 * OUTPUT_SIZE * OUTPUT_SIZE)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.bias_image = nn.Parameter(torch.zeros(1, 3, OUTPUT_SIZE, OUTPUT_SIZE))
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :]) / 16.0
        self.register_buffer("blur", kernel.expand(3, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        linear = self.linear(v).view(-1, 3, OUTPUT_SIZE, OUTPUT_SIZE)
        pixels = _to_pixels(self.conv(x) + linear + self.bias_image)
        padded = torch.nn.functional.pad(pixels, (1, 1, 1, 1), mode="replicate")
        return torch.nn.functional.conv2d(padded, self.blur, groups=3)

    def init_linear(self, vectors: torch.Tensor, faces: torch.Tensor, ridge: float = 1e-2) -> None:
        """Ridge regression of the faces' tanh-domain pixels [M, 3, 64, 64] (0..255) on ``vectors`` [M, D]."""
        with torch.no_grad():
            y = torch.atanh((faces.double() / 127.5 - 1.0).clamp(-0.95, 0.95)).flatten(1)
            x = vectors.double()
            mx, my = x.mean(0), y.mean(0)
            xc = x - mx
            gram = xc.T @ xc
            gram += ridge * gram.trace() / gram.shape[0] * torch.eye(gram.shape[0], dtype=gram.dtype)
            w = torch.linalg.solve(gram, xc.T @ (y - my))  # [D, P]
            self.linear.weight.copy_(w.T.float())
            self.bias_image.copy_((my - mx @ w).view(1, 3, OUTPUT_SIZE, OUTPUT_SIZE).float())


class _Seed(nn.Module):
    """Vector -> [N, C, 4, 4] feature map (a fully connected layer, as every method starts)."""

    def __init__(self, dim: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.fc = nn.Linear(dim, channels * 16)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.fc(v).view(-1, self.channels, 4, 4)))


# --------------------------------------------------------------------------------------------
# Naive: stacked inverted ResNet blocks.


class InvertedResidualBlock(nn.Module):
    """Upsampling residual block: transposed conv 4x4/2 + conv 3x3 on the main branch, nearest
    upsampling + 1x1 conv on the shortcut (an inverted ResNet basic block)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.main(x) + self.skip(x))


class NaiveGenerator(nn.Module):
    """The paper's "Naive" CNN: vector -> 4x4 map -> four inverted residual blocks -> 64x64 face."""

    def __init__(self, dim: int, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        self.seed = _Seed(dim, widths[0])
        self.blocks = nn.Sequential(*[InvertedResidualBlock(a, b) for a, b in zip(widths, widths[1:], strict=False)])
        self.head = FaceHead(widths[-1], dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.seed(v)), v)


# --------------------------------------------------------------------------------------------
# NBNet-B: deconvolution blocks followed by neighbourly dense blocks (Mai et al. 2018).


class NeighborlyBlock(nn.Module):
    """NbBlock-B: ``layers`` conv layers; each sees the concatenation of the outputs of its
    neighbours within the block (the previous ``reach`` layers, not all of them as in DenseNet),
    through a 1x1 bottleneck (the "-B" variant). Output: the block input plus all layer outputs,
    reduced back to ``channels`` by a 1x1 transition."""

    def __init__(self, channels: int, growth: int, layers: int = 3, reach: int = 2) -> None:
        super().__init__()
        self.reach = reach
        self.layers = nn.ModuleList()
        for i in range(layers):
            c_in = channels if i == 0 else growth * min(i, reach) + (channels if i < reach else 0)
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(c_in, 2 * growth, 1, bias=False),
                    nn.BatchNorm2d(2 * growth),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(growth),
                    nn.ReLU(inplace=True),
                )
            )
        self.transition = nn.Sequential(
            nn.Conv2d(channels + growth * layers, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            neighbours = outputs[max(0, i - self.reach) :]
            inputs = neighbours if i >= self.reach else [x, *neighbours]
            outputs.append(layer(torch.cat(inputs, 1)))
        return self.transition(torch.cat([x, *outputs], 1))


class NBNetGenerator(nn.Module):
    """NBNet-B: per scale a transposed conv 4x4/2 (the de-convolution block) then an NbBlock-B."""

    def __init__(self, dim: int, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        self.seed = _Seed(dim, widths[0])
        stages = []
        for a, b in zip(widths, widths[1:], strict=False):
            stages += [
                nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(inplace=True),
                NeighborlyBlock(b, growth=max(8, b // 4)),
            ]
        self.stages = nn.Sequential(*stages)
        self.head = FaceHead(widths[-1], dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.seed(v)), v)


# --------------------------------------------------------------------------------------------
# Vec2Face: a conditional GAN (Duong et al. 2020; no official code, choices documented here).


#: Size of the generator's noise input. Training draws it from N(0, I); inference (and the ONNX
#: export) uses z = 0, the mode, so a scan is deterministic.
VEC2FACE_NOISE = 32


class Vec2FaceGenerator(nn.Module):
    """Generator G(v, z): [v, z] -> 4x4 map -> nearest-upsample + conv blocks (no checkerboard
    artefacts of transposed convs) -> 64x64 face. v is also injected at every scale as a
    per-channel scale and shift (FiLM), so the identity cannot be washed out by depth."""

    def __init__(self, dim: int, widths: tuple[int, ...] = WIDTHS, noise: int = VEC2FACE_NOISE) -> None:
        super().__init__()
        self.noise = noise
        self.channels = widths[0]
        # No batch normalisation in the generator: its batch statistics differ between GAN training
        # (noisy z) and inference (z = 0), which collapsed every output to one image in a first try.
        self.fc = nn.Linear(dim + noise, widths[0] * 16)
        self.ups = nn.ModuleList()
        self.films = nn.ModuleList()
        for a, b in zip(widths, widths[1:], strict=False):
            self.ups.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(a, b, 3, 1, 1),
                    nn.LeakyReLU(0.2, inplace=True),
                    nn.Conv2d(b, b, 3, 1, 1),
                )
            )
            self.films.append(nn.Linear(dim, 2 * b))
        self.head = FaceHead(widths[-1], dim)

    def forward(self, v: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            z = torch.zeros(v.shape[0], self.noise, dtype=v.dtype, device=v.device)
        h = torch.nn.functional.leaky_relu(self.fc(torch.cat([v, z], 1)).view(-1, self.channels, 4, 4), 0.2)
        for up, film in zip(self.ups, self.films, strict=True):
            h = up(h)
            gamma, beta = film(v).unsqueeze(-1).unsqueeze(-1).chunk(2, 1)
            h = torch.nn.functional.leaky_relu(h * (1 + gamma) + beta, 0.2)
        return self.head(h, v)


class Vec2FaceDiscriminator(nn.Module):
    """Projection discriminator D(x, v) (Miyato & Koyama 2018) with spectral normalisation:
    strided convs 64 -> 4 px, then a linear score plus <embed(v), features>, so D judges whether
    the face is real *and* whether it belongs to v."""

    def __init__(self, dim: int, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        layers, c = [], 3
        for w in widths:
            layers += [sn(nn.Conv2d(c, w, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)  # 64 -> 4
        self.score = sn(nn.Linear(c, 1))
        self.embed = sn(nn.Linear(dim, c))

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        h = self.features(x / 127.5 - 1.0).sum((2, 3))
        return self.score(h).squeeze(1) + (self.embed(v) * h).sum(1)


GENERATORS = {"naive": NaiveGenerator, "nbnet": NBNetGenerator, "vec2face": Vec2FaceGenerator}


def build_generator(method: str, dim: int) -> nn.Module:
    """The untrained generator of ``method`` for ``dim``-dimensional vectors.

    >>> g = build_generator("nbnet", 128).eval()
    >>> tuple(g(torch.nn.functional.normalize(torch.randn(2, 128), dim=1)).shape)
    (2, 3, 64, 64)
    """
    return GENERATORS[method](dim)
