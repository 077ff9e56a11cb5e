"""``jpegfx.bench``: what it times is what it claims to time."""
from __future__ import annotations

import pytest
import torch

from jpegfx import bench, models
from jpegfx.errors import UsageError


def test_every_timed_call_waits_for_the_device(monkeypatch):
    """On a GPU a call returns before its kernels finish; each timed run must end with a synchronisation
    of the model's device (here counted on the CPU, where the synchroniser is otherwise a no-op)."""
    calls = []
    monkeypatch.setattr(bench, "_synchronizer", lambda device: (lambda: calls.append(device.type)))
    warmup, repeat = 1, 2
    r = bench.run_bench("paper", (32, 32), batch=1, warmup=warmup, repeat=repeat, layers=False, onnx=False)
    timed = [key for key in r.seconds if key != "convert"]
    assert {"end_to_end_jpeg", "spatial_network_only", "end_to_end_pillow_spatial"} <= set(timed)
    assert calls == ["cpu"] * (len(timed) * (warmup + repeat))


def test_layer_timing_waits_for_the_device_after_every_node(monkeypatch):
    import jpegfx
    from jpegfx.verify import spatial_graph

    calls = []
    monkeypatch.setattr(bench, "_synchronizer", lambda device: (lambda: calls.append(device.type)))
    model = models.create_model("resnet20").eval()
    jpeg_model = jpegfx.convert(model, (16, 16))
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rows = bench.layer_times(model, jpeg_model, x, repeat=2)
    nodes = len(spatial_graph(model, 3).graph.nodes) + len(jpeg_model.network.graph.nodes)
    assert rows and calls == ["cpu"] * (2 * nodes)


@pytest.mark.parametrize("device", ["gpu", "tpu:0", "cuda:x"])
def test_unknown_devices_are_usage_errors(device):
    with pytest.raises(UsageError, match="expected cpu, cuda or cuda:N"):
        bench.resolve_device(device)
