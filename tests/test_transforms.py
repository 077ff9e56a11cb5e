"""The transform conventions: DCT, zigzag, quantisation, blocking, J / J̃ and H (paper §3, eq. 4–20)."""
from __future__ import annotations

import pytest
import torch

from jpegfx import transforms as T

SIZES = [(8, 8), (16, 24), (7, 7), (13, 5), (1, 1), (9, 17)]
SIZE_IDS = [f"{h}x{w}" for h, w in SIZES]


def test_dct_is_orthonormal():
    c = T.dct_matrix()
    assert torch.allclose(c @ c.T, torch.eye(8, dtype=torch.float64), atol=1e-14)
    d = T.dct_basis()
    assert torch.allclose(d @ d.T, torch.eye(64, dtype=torch.float64), atol=1e-14)


def test_dc_is_eight_times_block_mean():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(T.to_dct(x)[0, 0, 0, 0], 8 * x.mean(), atol=1e-13)


def test_zigzag_order_and_inverse():
    z = T.zigzag(torch.arange(64))
    assert z[:10].tolist() == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]
    assert z[-1] == 63 and sorted(z.tolist()) == list(range(64))
    assert torch.equal(T.unzigzag(z), torch.arange(64))


@pytest.mark.parametrize("k", range(1, 16))
def test_frequency_mask_counts(k):
    m = T.frequency_mask(k).reshape(8, 8)
    expected = sum(min(s + 1, 15 - s) for s in range(k))  # cells on anti-diagonals 0..k-1
    assert int(m.sum()) == expected
    assert bool(m[0, 0]) and bool(m[k - 1 if k <= 8 else 7, max(0, k - 8)])
    if k < 15:
        assert not bool(m[7, 7])


def test_frequency_mask_rejects_out_of_range():
    with pytest.raises(ValueError):
        T.frequency_mask(0)
    with pytest.raises(ValueError):
        T.frequency_mask(16)


def test_quantise_roundtrip():
    f = torch.randn(5, 64, dtype=torch.float64)
    q = torch.randint(1, 100, (64,)).double()
    assert torch.allclose(T.dequantise(T.quantise(f, q), q), f, atol=1e-12)


@pytest.mark.parametrize("h,w", SIZES, ids=SIZE_IDS)
def test_blockify_roundtrip_and_zero_padding(h, w):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    b = T.blockify(x)
    g = T.BlockGeometry(h, w)
    assert b.shape == (2, 3 * 64, g.hb, g.wb)
    assert torch.equal(T.unblockify(b, (h, w)), x)
    padded = T.unblockify(b)
    assert padded[..., h:, :].abs().sum() == 0 and padded[..., :, w:].abs().sum() == 0
    assert torch.allclose(T.from_dct(T.to_dct(x), (h, w)), x, atol=1e-12)


def test_layout_plane_index_is_channel_times_64_plus_coefficient():
    x = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    x[0, 1] = 1.0  # constant block in channel 1 only → DC of channel 1 = 8
    f = T.to_dct(x)[0, :, 0, 0]
    assert torch.allclose(f[64], torch.tensor(8.0, dtype=torch.float64))
    assert f[:64].abs().max() < 1e-14 and f[65:].abs().max() < 1e-13


@pytest.mark.parametrize("h,w", SIZES[:4], ids=SIZE_IDS[:4])
def test_compression_and_decompression_maps(h, w):
    q = torch.arange(1, 65, dtype=torch.float64)
    img = torch.randn(h, w, dtype=torch.float64)
    jmap = T.compression_map(h, w, q)
    coeffs = torch.einsum("xykhw,hw->xyk", jmap, img)
    expected = T.quantise(T.to_dct(img[None, None])[0].permute(1, 2, 0), q)
    assert torch.allclose(coeffs, expected, atol=1e-12)
    back = torch.einsum("hwxyk,xyk->hw", T.decompression_map(h, w, q), coeffs)
    assert torch.allclose(back, img, atol=1e-12)


@pytest.mark.parametrize("use_table", [False, True], ids=["q1", "qtable"])
def test_harmonic_mixing_tensor_is_spatial_masking(use_table):
    q = torch.randint(1, 50, (64,)).double() if use_table else None
    f = torch.randn(64, dtype=torch.float64)
    g = (torch.rand(64, dtype=torch.float64) > 0.5).double()
    d = T.dct_basis()
    table = q if q is not None else torch.ones(64, dtype=torch.float64)
    expected = (d @ (g * (d.T @ (f * table)))) / table
    got = torch.einsum("jkp,k,p->j", T.harmonic_mixing_tensor(q), f, g)
    assert torch.allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("h,w", SIZES, ids=SIZE_IDS)
def test_constant_pattern_and_coefficient_mask(h, w):
    g = T.BlockGeometry(h, w)
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    assert torch.allclose(g.constant_pattern(), T.to_dct(ones)[0], atol=1e-13)
    junk = torch.randn(1, 64, g.hb, g.wb, dtype=torch.float64)  # nonzero padding pixels
    masked = torch.einsum("abxy,nbxy->naxy", g.coefficient_mask(), junk)
    expected = T.to_dct(T.from_dct(junk, (h, w)))
    assert torch.allclose(masked, expected, atol=1e-12)


@pytest.mark.parametrize("size,k,s,p,out", [(224, 7, 2, 3, 112), (112, 3, 2, 1, 56), (7, 3, 1, 1, 7), (1, 3, 2, 1, 1)])
def test_conv_output_size(size, k, s, p, out):
    assert T.conv_output_size(size, k, s, p) == out


class _OneDevice(torch.overrides.TorchFunctionMode):
    """Fails any torch call that mixes tensors of two devices (0-dim CPU scalars aside): the 'meta'
    device stands in for CUDA, where a CPU constant meeting a GPU tensor is an error."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs))
                   if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.dim() == 0)]
        devices = {t.device.type for t in tensors}
        assert len(devices) <= 1, f"{getattr(func, '__name__', func)} mixes devices {sorted(devices)}"
        return func(*args, **kwargs)


def test_block_transforms_follow_the_input_device():
    """The cached maps live on the CPU; the transforms move them to the input's device."""
    x = torch.empty(2, 3, 19, 21, device="meta")
    with _OneDevice():
        y = T.to_dct(x)
        assert y.device.type == "meta" and y.shape == (2, 3 * 64, 3, 3)
        assert T.from_dct(y, (19, 21)).device.type == "meta"
        assert T.block_idct(y).device.type == "meta" and T.block_dct(y).device.type == "meta"
        small = torch.empty(1, 64, 2, 2, device="meta")  # a small grid takes the other product
        assert T.block_idct(small).device.type == "meta"


def test_jpeg_batch_to_device():
    from jpegfx import jpeg as jpeg_io

    batch = jpeg_io.encode(torch.rand(2, 3, 16, 24) * 255, quality=80, subsampling="4:2:0")
    moved = batch.to("meta")
    assert all(c.coefficients.device.type == "meta" and c.qtable.device.type == "meta" for c in moved.components)
    assert moved.size == batch.size and moved.subsampling == batch.subsampling


@pytest.mark.parametrize("domains", ["jpeg", "pixels"])
@pytest.mark.parametrize("relu", ["exact", "asm"])
def test_converted_model_runs_on_the_device_of_its_input(domains, relu):
    """A converted ResNet moved to another device ('meta' standing in for CUDA) computes there, from a
    JpegBatch and from a JPEG-domain tensor, without a constant left on the CPU."""
    import jpegfx
    from jpegfx import jpeg as jpeg_io
    from jpegfx import models

    torch.manual_seed(0)
    jpeg_model = jpegfx.convert(models.resnet20().eval(), (37, 29), relu=relu, frequencies=6, domains=domains,
                                normalize="imagenet").eval()
    batch = jpeg_io.encode(torch.rand(2, 3, 37, 29) * 255, quality=80, subsampling="4:2:0")
    jpeg_model.to("meta")
    with _OneDevice(), torch.no_grad():
        assert jpeg_model.spatial_input(batch.to("meta")).device.type == "meta"  # the float decode reference
        out = jpeg_model(batch.to("meta"))
        assert out.device.type == "meta" and out.shape == (2, 10)
        x = torch.empty(2, 3 * 64, 5, 4, device="meta")
        assert jpeg_model(x).device.type == "meta"
