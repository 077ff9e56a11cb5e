"""The ``node.meta`` keys the conversion passes write, and the roles of nodes."""

DOMAIN = "jpegfx_domain"  # node.meta key: "jpeg" (an (N, C·64, Hb, Wb) value) or "spatial"
GEOMETRY = "jpegfx_geometry"  # node.meta key: BlockGeometry of a JPEG-domain value (or of a spatial image)
ROLE = "jpegfx_role"  # node.meta key: how the node runs, one of ROLES
IMAGE = "jpegfx_image"  # node.meta key: True for an image-like value, (N, C, h, w) with h·w > 1, from the input
FALLBACK = "jpegfx_fallback"  # node.meta key: (op description, why it has no JPEG-domain lowering)
PIXEL_OP = "jpegfx_pixel_op"  # node.meta key: the name of the supported pixel op (registry.PIXEL_OPS) it is

LOWER, PIXEL_FALLBACK, SPATIAL, INPUT = "lower", "pixels", "spatial", "input"
ROLES = (INPUT, LOWER, PIXEL_FALLBACK, SPATIAL)
"""``input``: the image placeholder; ``lower``: replaced by a JPEG-domain op; ``pixels``: computed on
pixels between an inverse and a forward block DCT (a supported pixel op, or the fallback for an op
with no JPEG-domain lowering); ``spatial``: everything that never reads an image (shape arithmetic,
the head). See :mod:`jpegfx.passes.assign_domains`."""
