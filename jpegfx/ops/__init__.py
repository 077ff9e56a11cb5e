"""JPEG-domain modules: one per spatial op, each built from its spatial twin (``from_spatial``).

All take and return JPEG-domain tensors ``(N, C·64, Hb, Wb)`` (see :mod:`jpegfx.transforms`) except
:class:`JpegAdaptiveAvgPool2d` and :class:`JpegToSpatial`, which end the JPEG domain.
"""
from jpegfx.ops.base import JpegModule, PaddingMask, to_jpeg, to_spatial
from jpegfx.ops.activation import JpegPiecewiseLinear
from jpegfx.ops.batchnorm import JpegBatchNorm2d
from jpegfx.ops.channel import JpegScale, JpegShape
from jpegfx.ops.groupnorm import JpegGroupNorm
from jpegfx.ops.conv import (
    DEFAULT_MAP_BUDGET,
    LOWERINGS,
    JpegConv2d,
    MapBudgetError,
    choose_lowering,
    conv_macs,
    fused_map_bytes,
)
from jpegfx.ops.pool import (
    JpegAdaptiveAvgPool2d,
    JpegAvgPool2d,
    JpegFromPixels,
    JpegMaxPool2d,
    JpegShortcutA,
    JpegSpatialMean,
    JpegToSpatial,
    spatial_mean,
)
from jpegfx.ops.relu import JpegReLU, relu_block_error

__all__ = [
    "DEFAULT_MAP_BUDGET",
    "LOWERINGS",
    "JpegAdaptiveAvgPool2d",
    "JpegAvgPool2d",
    "JpegBatchNorm2d",
    "JpegConv2d",
    "JpegMaxPool2d",
    "JpegPiecewiseLinear",
    "JpegFromPixels",
    "JpegGroupNorm",
    "JpegModule",
    "JpegReLU",
    "JpegScale",
    "JpegShape",
    "JpegShortcutA",
    "JpegSpatialMean",
    "JpegToSpatial",
    "MapBudgetError",
    "PaddingMask",
    "choose_lowering",
    "conv_macs",
    "fused_map_bytes",
    "relu_block_error",
    "spatial_mean",
    "to_jpeg",
    "to_spatial",
]
