"""The input stage of a converted model: JPEG file coefficients → the model's input, in the JPEG domain.

A spatial model sees ``x = (rgb / 255 − mean) / std`` with ``rgb`` the decoded image. Everything from
the file's quantised coefficients to ``x`` is linear (DESIGN §2), so the stage computes, exactly:

1. **dequantise** each component with each image's own table (tables are run-time inputs);
2. **zero the encoder's padding**: full-resolution components go through a :class:`PaddingMask`
   (the file's boundary blocks hold edge-replicated pixels past the logical size);
3. **upsample** smaller components to the image size — libjpeg's "fancy" triangle filter (default) or
   nearest, through the pixel domain (IDCT → :func:`jpegfx.jpeg.upsample_chroma` → DCT): the filter
   crosses block borders, so it is not a per-block map;
4. **colour conversion and normalisation** in one per-pixel affine map ``x = A · ycc + d`` with
   ``ycc`` the level-shifted components (``IDCT(F) + 128``): in the DCT domain it is the channel mix
   ``A`` on every coefficient plus ``d · constant_pattern`` (DC only on whole blocks).

Channel policy: a colour JPEG into a one-channel model gives it luma (Y, exactly the JFIF
0.299 R + 0.587 G + 0.114 B; chroma is then not even decoded); a gray JPEG into a three-channel
model gives it luma in all three channels (R = G = B = Y), as Pillow's ``convert("RGB")`` does.
"""
from __future__ import annotations

import functools

import torch

from jpegfx import jpeg as jpeg_io
from jpegfx import transforms as T
from jpegfx.errors import UsageError
from jpegfx.ops.base import DerivedMaps, PaddingMask, add_channel_constant
from jpegfx.transforms import BLOCK, NCOEF, BlockGeometry

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
UPSAMPLING = ("fancy", "nearest")


def normalization(normalize, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` float64 (channels,) from ``None`` (pixels / 255), "imagenet" or ``(mean, std)``
    (one value for every channel, or one per channel). :class:`~jpegfx.errors.UsageError` otherwise."""
    if normalize is None:
        return torch.zeros(channels, dtype=torch.float64), torch.ones(channels, dtype=torch.float64)
    if isinstance(normalize, str):
        if normalize != "imagenet":
            raise UsageError(f"normalize must be None, 'imagenet' or (mean, std), got {normalize!r}")
        normalize = IMAGENET
    try:
        mean, std = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in normalize)
    except (TypeError, ValueError, RuntimeError):
        raise UsageError(f"normalize must be None, 'imagenet' or (mean, std) of numbers, got {normalize!r}") from None
    for name, values in (("mean", mean), ("std", std)):
        if values.numel() not in (1, channels):
            raise UsageError(f"normalisation {name} has {values.numel()} value(s) for a model with {channels} input "
                             f"channel(s): give 1 or {channels}")
    mean, std = mean.expand(channels).clone(), std.expand(channels).clone()
    if bool((std <= 0).any()):
        raise UsageError("normalisation std must be positive")
    return mean, std


def colour_map(color_space: str, channels: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``(M, b, used)``: model pixels (0–255) ``= M · ycc[used] + b`` for the level-shifted components."""
    if channels not in (1, 3):
        raise UsageError(f"JPEG input feeds models with 1 or 3 input channels, not {channels}")
    if color_space == "gray":
        return torch.ones(channels, 1, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64), [0]
    if color_space != "ycbcr":
        raise ValueError(f"unsupported colour space {color_space!r}")
    if channels == 1:
        return torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), [0]
    m, b = jpeg_io.ycbcr_to_rgb_matrix()
    return m, b, [0, 1, 2]


_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")


def _without_autocast(method):
    """Run an input-stage method in the stage's own precision even under autocast: the stage is the
    decoder (dequantise, inverse DCT, upsample, colour), which a spatial pipeline runs before autocast."""

    @functools.wraps(method)
    def run(self, *inputs, **kwargs):
        device = inputs[0].device.type if inputs else "cpu"
        if device not in _AUTOCAST_DEVICES:  # a device without autocast
            return method(self, *inputs, **kwargs)
        with torch.autocast(device, enabled=False):
            return method(self, *inputs, **kwargs)

    return run


class JpegInputStage(DerivedMaps):
    """Quantised coefficients and tables of a :class:`~jpegfx.jpeg.JpegBatch` → ``(N, C·64, Hb, Wb)``.

    ``forward(coefficients_0, …, coefficients_{K−1}, qtable_0, …, qtable_{K−1})`` with
    ``coefficients_j`` int16 ``(N, Hb_j, Wb_j, 8, 8)`` and ``qtable_j`` ``(N, 64)`` natural order.
    """

    def __init__(self, size: tuple[int, int], samplings: tuple[tuple[int, int], ...], color_space: str,
                 channels: int, normalize=None, upsampling: str = "fancy",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
        self.geometry = BlockGeometry(*size)
        self.samplings, self.color_space, self.channels = tuple(samplings), color_space, channels
        self.upsampling = upsampling
        m, b, self.used = colour_map(color_space, channels)
        mean, std = normalization(normalize, channels)
        # x = (M · (IDCT(F) + 128) + b) / 255 − mean) / std  =  A · IDCT(F) + d
        a = m / (255.0 * std[:, None])
        d = ((m.sum(dim=1) * 128.0 + b) / 255.0 - mean) / std
        self.register_map("mix", a, dtype)
        self.register_map("offset", d, dtype)
        self.register_map("pattern", self.geometry.constant_pattern(), dtype)
        self.register_map("idct", T.dct_basis(), dtype)  # pixel block (row) = coefficients (row) · D
        self.sizes, self.factors = component_layout(size, self.samplings)
        self.mask = PaddingMask(self.geometry, dtype)

    def key(self) -> str:
        return input_stage_key(self.color_space, self.samplings)

    def _component(self, coefficients: torch.Tensor, table: torch.Tensor, size: tuple[int, int],
                   factor: tuple[int, int]) -> torch.Tensor:
        dtype = self.mix.dtype
        hb, wb = coefficients.shape[1], coefficients.shape[2]
        f = coefficients.to(dtype).reshape(-1, hb, wb, NCOEF) * table.to(dtype).reshape(-1, 1, 1, NCOEF)
        f = f.permute(0, 3, 1, 2)  # (N, 64, Hb_j, Wb_j)
        if size == (self.geometry.h, self.geometry.w):
            return self.mask(f)
        plane = T.from_dct(f, size)
        full = (self.geometry.h, self.geometry.w)
        return T.to_dct(jpeg_io.upsample_chroma(plane, factor, full, self.upsampling))

    def _split(self, inputs: tuple[torch.Tensor, ...], samplings) -> tuple:
        """``(coefficients, tables, component sizes, upsampling factors)`` of the inputs' layout."""
        k = len(inputs) // 2
        if samplings is None or tuple(samplings) == self.samplings:
            sizes, factors = self.sizes, self.factors
        else:
            if len(samplings) != k:
                raise ValueError(f"{len(samplings)} sampling factors for {k} component(s)")
            sizes, factors = component_layout((self.geometry.h, self.geometry.w), tuple(samplings))
        return inputs[:k], inputs[k:], sizes, factors

    @_without_autocast
    def forward(self, *inputs: torch.Tensor, samplings: tuple[tuple[int, int], ...] | None = None) -> torch.Tensor:
        """``samplings``: the inputs' per-component ``(v, h)`` factors when they are not the stage's own
        (same colour space; only the ratios to the largest factor matter). The stage is the same module
        for every layout of its colour space, so a model never builds a module while it runs."""
        coefficients, tables, sizes, factors = self._split(inputs, samplings)
        planes = torch.stack([self._component(coefficients[j], tables[j], sizes[j], factors[j]) for j in self.used],
                             dim=1)
        n, hb, wb = planes.shape[0], planes.shape[-2], planes.shape[-1]
        x = torch.matmul(self.mix, planes.reshape(n, len(self.used), -1)).reshape(n, self.channels * NCOEF, hb, wb)
        return add_channel_constant(x, self.offset, self.pattern)

    @_without_autocast
    def pixels(self, *inputs: torch.Tensor, samplings: tuple[tuple[int, int], ...] | None = None) -> torch.Tensor:
        """The same input as normalised pixels ``(N, C, h, w)`` — what :meth:`forward` gives before its
        block DCT — for networks whose first op is the inverse DCT (``convert(domains="pixels")``):
        dequantise, IDCT, upsample, ``A · ycc + d``, with no transform pair in between.

        The blocks stay rows in the order the file gives them: dequantised, then one product with the
        (64, 64) inverse DCT over every block of the batch; components of one geometry (Cb and Cr)
        share that product and one upsampling."""
        coefficients, tables, sizes, factors = self._split(inputs, samplings)
        dtype, full = self.mix.dtype, (self.geometry.h, self.geometry.w)
        groups: list[tuple[tuple, list[int]]] = []  # runs of components of one geometry
        for j in self.used:
            key = (sizes[j], factors[j], tuple(int(d) for d in coefficients[j].shape[1:3]))  # static in a graph
            if groups and groups[-1][0] == key:
                groups[-1][1].append(j)
            else:
                groups.append((key, [j]))
        planes = []
        for (size, factor, (hb, wb)), js in groups:
            c = torch.stack([coefficients[j] for j in js], dim=1) if len(js) > 1 else coefficients[js[0]][:, None]
            q = torch.stack([tables[j] for j in js], dim=1) if len(js) > 1 else tables[js[0]][:, None]
            g = len(js)  # the batch dimension as -1: no shape arithmetic in an exported graph
            f = c.reshape(-1, g, hb * wb, NCOEF).to(dtype) * q.to(dtype)[:, :, None, :]  # dequantised
            rows = torch.matmul(f, self.idct)  # (N, g, Hb·Wb, 64) pixel blocks: one product over every block
            x = rows.reshape(-1, g, hb, wb, BLOCK, BLOCK).transpose(3, 4).reshape(-1, g, hb * BLOCK, wb * BLOCK)
            x = x[..., : size[0], : size[1]]
            planes.append(x if size == full else jpeg_io.upsample_chroma(x, factor, full, self.upsampling))
        x = torch.cat(planes, dim=1) if len(planes) > 1 else planes[0]  # (N, K, h, w)
        x = torch.matmul(self.mix, x.flatten(2)).reshape(-1, self.channels, *full)  # A · ycc, every pixel
        return x.add_(self.offset[None, :, None, None])

    def extra_repr(self) -> str:
        return (f"{self.geometry.h}x{self.geometry.w}, {self.color_space} {self.samplings} -> {self.channels} "
                f"channel(s), upsampling={self.upsampling}")


def component_layout(size: tuple[int, int], samplings: tuple[tuple[int, int], ...]
                     ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Per component, its logical size ``(h_c, w_c) = ceil(size · factor / max factor)`` and its upsampling
    factors ``(v_max / v, h_max / h)``."""
    vmax = max(v for v, _ in samplings)
    hmax = max(h for _, h in samplings)
    sizes = [(-(-size[0] * v // vmax), -(-size[1] * h // hmax)) for v, h in samplings]
    return sizes, [(vmax // v, hmax // h) for v, h in samplings]


def input_stage_key(color_space: str, samplings) -> str:
    return color_space + "_" + "_".join(f"{v}x{h}" for v, h in samplings)


def batch_tensors(batch: jpeg_io.JpegBatch) -> tuple[torch.Tensor, ...]:
    """The positional inputs of :class:`JpegInputStage` for a batch."""
    return tuple(c.coefficients for c in batch.components) + tuple(c.qtable for c in batch.components)


def spatial_model_input(batch: jpeg_io.JpegBatch, channels: int, normalize=None, upsampling: str = "fancy",
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The reference: what the spatial model sees for ``batch`` — the float decode
    (:func:`jpegfx.jpeg.decode`), the channel policy of this module, ``/255`` and ``(x − mean)/std``."""
    if batch.color_space == "ycbcr" and channels == 1:  # luma itself, not luma recomputed from RGB
        batch = jpeg_io.JpegBatch(batch.components[:1], batch.size, "gray")
    pixels = jpeg_io.decode(batch, upsampling=upsampling)  # (N, 3 | 1, h, w) float64, 0–255
    if batch.color_space == "gray" and channels == 3:
        pixels = pixels.expand(-1, 3, -1, -1)
    mean, std = (t.to(pixels.device) for t in normalization(normalize, channels))
    return ((pixels / 255.0 - mean[:, None, None]) / std[:, None, None]).to(dtype)
