"""What the passes share: the options, the example input, and the record of what was lowered."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from jpegfx.registry import ConvertOptions
from jpegfx.transforms import BlockGeometry

DOMAIN = "jpegfx_domain"  # node.meta key: "jpeg" (an (N, C·64, Hb, Wb) value) or "spatial"
GEOMETRY = "jpegfx_geometry"  # node.meta key: BlockGeometry of a JPEG-domain value


@dataclass(frozen=True)
class LayerRecord:
    """One lowered node, for conversion summaries."""

    node: str
    target: str
    spatial: str
    jpeg: str
    detail: str
    in_geometry: BlockGeometry
    out_geometry: BlockGeometry
    map_bytes: int = 0
    domains: tuple[str, str] = ("jpeg", "jpeg")  # (in, out); "pixels" where elide_transforms cancelled a pair


@dataclass
class PassContext:
    options: ConvertOptions
    input_size: tuple[int, int]
    in_channels: int
    keep_jpeg_output: bool = False
    debug: bool = False
    records: list[LayerRecord] = field(default_factory=list)

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, self.in_channels, *self.input_size, dtype=self.options.dtype)
