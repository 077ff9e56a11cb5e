"""jpegfx.export: every zoo model exports to one ONNX file whose onnxruntime logits equal the torch
JPEG model's, with the spec in its metadata.

Sizes are kept small for CI: the CIFAR-style nets at 32×32 and the ImageNet ResNets at 64×48; each
model is converted and exported once (module-scoped fixture) and checked by several tests. The
batches fed to onnxruntime have 3 images (the export traces 2) with a different quality than the
trace, so the dynamic batch axis and the run-time tables are exercised.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import jpegfx
from jpegfx import export, models
from jpegfx.export import OnnxSpec, export_onnx, read_spec
from jpegfx.jpeg import encode
from jpegfx.ops.input import batch_tensors

# name, size, subsampling, normalize, model options
CASES = [
    ("paper", (32, 32), "gray", None, {"in_channels": 1}),
    ("resnet20", (32, 32), "4:2:0", "imagenet", {}),
    ("resnet56", (32, 32), "4:2:0", "imagenet", {}),
    ("preact_resnet18", (32, 32), "4:2:0", "imagenet", {}),
    ("resnet18", (64, 48), "4:2:0", "imagenet", {}),
    ("resnet34", (64, 48), "4:2:0", "imagenet", {}),
    ("resnet50", (64, 48), "4:2:0", "imagenet", {}),
]
assert {c[0] for c in CASES} == set(models.MODELS), "every zoo model needs an export case"
RTOL = 1e-5  # float32: max |ort - torch| <= RTOL * max |torch|


def build_jpeg_model(name, size, subsampling, normalize, options, seed=0):
    torch.manual_seed(seed)
    model = models.create_model(name, **options)
    models.randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    jpeg_model = jpegfx.convert(model.eval(), size, subsampling=subsampling, normalize=normalize).eval()
    jpeg_model.num_classes = model.fc.out_features
    return jpeg_model


def random_batch(jpeg_model, n, quality=60, seed=1):
    h, w = jpeg_model.spec.input_size
    gray = jpeg_model.spec.subsampling == "gray"
    images = torch.rand(n, 1 if gray else 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255
    return encode(images, quality=quality, subsampling="4:2:0" if gray else jpeg_model.spec.subsampling)


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def exported(request, tmp_path_factory):
    name, size, subsampling, normalize, options = request.param
    jpeg_model = build_jpeg_model(name, size, subsampling, normalize, options)
    classes = [f"class_{i}" for i in range(jpeg_model.num_classes)]
    path = export_onnx(jpeg_model, tmp_path_factory.mktemp(name) / f"{name}.onnx", class_names=classes)
    return jpeg_model, path, classes


def test_single_checked_file(exported):
    _, path, _ = exported
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path))
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no external data, no temp files


def test_metadata_round_trips(exported):
    jpeg_model, path, classes = exported
    spec = read_spec(path)
    model_spec = jpeg_model.spec
    color_space, samplings = model_spec.samplings()
    assert isinstance(spec, OnnxSpec)
    assert spec.jpegfx_version == jpegfx.__version__
    assert spec.input_size == model_spec.input_size
    assert spec.channels == model_spec.channels
    assert spec.subsampling == model_spec.subsampling
    assert spec.color_space == color_space
    assert spec.samplings == samplings
    assert spec.normalize == model_spec.normalize
    assert (spec.upsampling, spec.relu, spec.frequencies) == (model_spec.upsampling, model_spec.relu,
                                                              model_spec.frequencies)
    assert spec.class_names == tuple(classes)
    expected_inputs = ("y", "y_qtable") if color_space == "gray" else (
        "y", "cb", "cr", "y_qtable", "cb_qtable", "cr_qtable")
    assert spec.input_names == expected_inputs
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["input_size"] == f"{model_spec.input_size[0]}x{model_spec.input_size[1]}"
    assert json.loads(meta["samplings"]) == [list(s) for s in samplings]
    assert json.loads(meta["input_names"]) == list(expected_inputs)


def test_onnxruntime_matches_torch(exported):
    jpeg_model, path, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == list(read_spec(path).input_names)
    assert [o.name for o in session.get_outputs()] == ["logits"]
    batch = random_batch(jpeg_model, 3)  # traced with 2 images
    feed = dict(zip(names, (t.numpy() for t in batch_tensors(batch))))
    assert feed["y"].dtype == np.int16 and feed["y_qtable"].dtype == np.int32
    got = session.run(None, feed)[0]
    with torch.no_grad():
        want = jpeg_model(batch).numpy()
    assert got.shape == want.shape == (3, want.shape[1])
    err, scale = np.abs(got - want).max(), np.abs(want).max()
    assert err <= RTOL * scale, f"max abs error {err:.3e} > {RTOL:.0e} x {scale:.3e}"


# --------------------------------------------------------------------------------------------
# Refusals and special layouts (small model only)
# --------------------------------------------------------------------------------------------
def test_train_mode_is_refused(tmp_path):
    torch.manual_seed(0)
    jpeg_model = jpegfx.convert(models.paper(), 32, subsampling="gray")  # the spatial model is in train mode
    assert jpeg_model.training
    with pytest.raises(ValueError, match=r"export needs eval mode: call jpeg_model.eval\(\)"):
        export_onnx(jpeg_model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def tiny_model(lowering="auto"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 3))
    return jpegfx.convert(model.eval(), 16, subsampling="gray", lowering=lowering).eval()


def test_too_large_for_one_file_is_refused(tmp_path, monkeypatch):
    jpeg_model = tiny_model("fused")
    monkeypatch.setattr(export, "PROTOBUF_LIMIT", export.tensor_bytes(jpeg_model) // 2)
    with pytest.raises(ValueError, match="lowering='factored'") as info:
        export_onnx(jpeg_model, tmp_path / "m.onnx")
    assert "\n" not in str(info.value) and "2 GiB" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_wrong_number_of_class_names_is_refused(tmp_path):
    with pytest.raises(ValueError, match="2 class names for a model with 3 classes"):
        export_onnx(tiny_model(), tmp_path / "m.onnx", class_names=["a", "b"])
    assert not (tmp_path / "m.onnx").exists()


def test_one_channel_model_on_colour_layout_reads_luma_only(tmp_path):
    """A 1-channel model on a colour layout never reads chroma: the file takes only y and its table."""
    jpeg_model = build_jpeg_model("paper", (32, 32), "4:2:0", None, {"in_channels": 1})
    path = export_onnx(jpeg_model, tmp_path / "luma.onnx")
    spec = read_spec(path)
    assert spec.color_space == "ycbcr" and spec.input_names == ("y", "y_qtable")
    batch = random_batch(jpeg_model, 3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"y": batch.components[0].coefficients.numpy(),
                             "y_qtable": batch.components[0].qtable.numpy()})[0]
    with torch.no_grad():
        want = jpeg_model(batch).numpy()
    assert np.abs(got - want).max() <= RTOL * np.abs(want).max()


def test_read_spec_refuses_foreign_files(tmp_path):
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), tmp_path / "plain.onnx")
    with pytest.raises(ValueError, match="plain.onnx: not a jpegfx model"):
        read_spec(tmp_path / "plain.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx at all")
    with pytest.raises(ValueError, match="junk.onnx"):
        read_spec(tmp_path / "junk.onnx")


def test_running_other_layouts_adds_no_module_and_export_still_works(tmp_path):
    """A 3-channel model fed gray and 4:4:4 batches (layouts other than its spec's) keeps its module
    tree: nothing is built inside ``forward``, so nothing is left in train mode for export to refuse."""
    torch.manual_seed(0)
    spatial = models.randomize_batchnorm(models.create_model("paper", in_channels=3),
                                         torch.Generator().manual_seed(0)).eval()
    jpeg_model = jpegfx.convert(spatial, 32, subsampling="4:2:0").eval()
    before = [name for name, _ in jpeg_model.named_modules()]
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 255
    gray = encode(images[:, :1], quality=80, subsampling="4:2:0")  # one channel: a gray batch
    full = encode(images, quality=80, subsampling="4:4:4")
    assert gray.color_space == "gray" and full.subsampling == "4:4:4"
    for batch in (gray, full):
        report = jpegfx.verify(spatial, jpeg_model, batch)
        assert report.max_rel_error <= RTOL, report.summary()
    assert [name for name, _ in jpeg_model.named_modules()] == before
    assert not any(m.training for m in jpeg_model.modules())
    stage = jpeg_model.input_stage(full)  # a layout of its own: built on demand, outside the model
    assert stage.samplings == ((1, 1),) * 3 and not stage.training
    assert [name for name, _ in jpeg_model.named_modules()] == before
    assert export_onnx(jpeg_model, tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("where, needle", [
    ("dir", "is a directory; give a file name"),
    ("under-file", "is not a directory"),
], ids=["directory", "under-a-regular-file"])
def test_unwritable_path_is_one_line_usage_error(tmp_path, where, needle):
    from jpegfx.errors import UsageError

    (tmp_path / "file").write_text("x")
    path = tmp_path if where == "dir" else tmp_path / "file" / "m.onnx"
    with pytest.raises(UsageError, match=needle) as info:
        export_onnx(tiny_model(), path)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_torch_free_spec_agrees_with_the_converter():
    """jpegfx.spec names the converter's options without importing torch: the same values."""
    from jpegfx import jpeg, spec, transforms
    from jpegfx.ops import input as input_stage
    from jpegfx.ops import relu

    assert spec.UPSAMPLING == input_stage.UPSAMPLING
    assert spec.RELU_MODES == relu.MODES
    assert spec.MAX_FREQUENCIES == transforms.MAX_FREQUENCIES
    assert spec.SUBSAMPLINGS is jpeg.SUBSAMPLINGS
