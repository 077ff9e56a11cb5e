"""jpegfx.runtime.Session: an exported model in onnxruntime on real JPEG files.

Fixtures are written here with Pillow from scikit-learn's china.jpg (64×48 crops, 4:2:0, a
different quality per file so the tables differ); the model is a random-weight ResNet-20 converted
at 64×48 (small and quick to export), shared by the whole module.
"""
from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import jpegfx
from jpegfx import models
from jpegfx.export import export_onnx
from jpegfx.errors import UsageError
from jpegfx.jpeg import JpegError, read_jpeg, stack
from jpegfx.runtime import Prediction, Session, default_providers

SIZE = (64, 48)  # (h, w)
QUALITIES = (55, 75, 92)
CLASSES = [f"class_{i}" for i in range(10)]


def china() -> Image.Image:
    """scikit-learn's china.jpg (what ``sklearn.datasets.load_sample_image('china.jpg')`` returns),
    opened directly: importing sklearn.datasets is slow."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-learn is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "images", "china.jpg")
    with Image.open(path) as image:
        return image.convert("RGB")


def crop(image: Image.Image, top: int, left: int, size=SIZE) -> Image.Image:
    h, w = size
    return image.crop((left, top, left + w, top + h))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three good 4:2:0 files and the bad ones, by kind."""
    d = tmp_path_factory.mktemp("jpegs")
    image = china()
    good = []
    for i, quality in enumerate(QUALITIES):
        path = d / f"good_{i}.jpg"
        crop(image, 120 + 40 * i, 200 + 90 * i).save(path, quality=quality, subsampling=2)
        good.append(str(path))
    bad = {
        "size": d / "wrong_size.jpg",
        "444": d / "full_chroma.jpg",
        "gray": d / "gray.jpg",
        "png": d / "not_a_jpeg.jpg",
    }
    crop(image, 10, 10, (64, 40)).save(bad["size"], quality=75, subsampling=2)
    crop(image, 10, 10).save(bad["444"], quality=75, subsampling=0)
    crop(image, 10, 10).convert("L").save(bad["gray"], quality=75)
    crop(image, 10, 10).save(bad["png"], format="PNG")
    return good, {k: str(v) for k, v in bad.items()}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    spatial = models.resnet20()
    models.randomize_batchnorm(spatial, torch.Generator().manual_seed(0))
    jpeg_model = jpegfx.convert(spatial.eval(), SIZE, subsampling="4:2:0", normalize="imagenet").eval()
    path = export_onnx(jpeg_model, tmp_path_factory.mktemp("model") / "resnet20.onnx", class_names=CLASSES)
    return jpeg_model, path


@pytest.fixture(scope="module")
def session(model):
    return Session(model[1], providers=["CPUExecutionProvider"], intra_op_threads=1)


def test_session_reads_the_spec(session, model):
    jpeg_model, path = model
    assert session.providers == ["CPUExecutionProvider"]
    assert session.spec.input_size == SIZE and session.spec.subsampling == "4:2:0"
    assert session.spec.samplings == jpeg_model.spec.samplings()[1]
    assert session.class_names == tuple(CLASSES)
    assert default_providers()[-1] == "CPUExecutionProvider"
    assert str(path) in repr(session)


def test_predict_matches_torch_on_real_files(session, model, files):
    jpeg_model, _ = model
    good, _ = files
    batch = stack([read_jpeg(p) for p in good])
    tables = batch.components[0].qtable
    assert len({tuple(t.tolist()) for t in tables}) == len(good), "the files should have different tables"
    with torch.no_grad():
        want = jpeg_model(batch)
    preds = session.predict(good, batch_size=2, top_k=3)  # two batches: 2 + 1
    assert [p.path for p in preds] == good
    assert all(isinstance(p, Prediction) and p.ok for p in preds)
    assert [p.top1 for p in preds] == want.argmax(dim=1).tolist()
    probs = torch.softmax(want.double(), dim=1)
    for p, row in zip(preds, probs):
        assert len(p.indices) == 3 and list(p.scores) == sorted(p.scores, reverse=True)
        assert p.labels == tuple(CLASSES[i] for i in p.indices)
        np.testing.assert_allclose(p.scores, row[list(p.indices)].numpy(), rtol=1e-4, atol=1e-6)
    logits = session.run(batch)
    assert np.abs(logits - want.numpy()).max() <= 1e-5 * np.abs(want.numpy()).max()


@pytest.mark.parametrize("kind, needle", [
    ("size", "image size 64x40 does not match the model's 64x48"),
    ("444", "subsampling 4:4:4 does not match the model's 4:2:0"),
    ("gray", "grayscale JPEG does not match the model's colour input"),
    ("png", "not a JPEG file"),
], ids=["wrong-size", "444-into-420", "gray-into-colour", "not-a-jpeg"])
def test_bad_files_give_one_line_errors(session, files, kind, needle):
    good, bad = files
    for call in (lambda: session.check(bad[kind]), lambda: session.predict([good[0], bad[kind]])):
        with pytest.raises(JpegError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and message.startswith(bad[kind] + ": "), message
        assert needle in message
    if kind == "444":
        assert "re-export with subsampling='4:4:4'" in message


def test_predict_can_skip_bad_files(session, files, caplog):
    good, bad = files
    paths = [good[0], bad["gray"], good[1], bad["png"]]
    with caplog.at_level("INFO", logger="jpegfx.runtime"):
        preds = session.predict(paths, batch_size=3, on_error="skip")
    assert [p.path for p in preds] == paths
    assert [p.ok for p in preds] == [True, False, True, False]
    assert preds[1].error.startswith(bad["gray"]) and preds[1].indices == ()
    assert preds[3].error.startswith(bad["png"] + ": ")
    assert [p.top1 for p in (preds[0], preds[2])] == [p.top1 for p in session.predict(good[:2])]
    # the error is in the result; the log says it at INFO only, so a caller printing results reports it once
    assert sum("skipping" in r.message for r in caplog.records) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("kwargs, needle", [
    ({"on_error": "ignore"}, "on_error must be 'raise' or 'skip'"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"batch_size": -2}, "batch_size must be a positive integer, got -2"),
    ({"top_k": 0}, "top_k must be a positive integer"),
], ids=["on_error", "batch_size-0", "batch_size-negative", "top_k"])
def test_predict_arguments_are_usage_errors(session, files, kwargs, needle):
    with pytest.raises(UsageError, match=needle) as info:
        session.predict(files[0], **kwargs)
    assert isinstance(info.value, ValueError)  # older callers catch ValueError


def test_check_accepts_batches(session, files):
    good, bad = files
    batch = stack([read_jpeg(p) for p in good])
    assert session.check(batch) is batch
    with pytest.raises(JpegError, match=r"^subsampling 4:4:4"):
        session.check(read_jpeg(bad["444"]))
    with pytest.raises(JpegError, match=r"^photo: subsampling 4:4:4"):
        session.check(read_jpeg(bad["444"]), name="photo")


def test_files_without_jpegfx_metadata_are_refused(tmp_path):
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), tmp_path / "plain.onnx")
    with pytest.raises(ValueError, match=r"plain.onnx: not a jpegfx model") as info:
        Session(tmp_path / "plain.onnx", providers=["CPUExecutionProvider"])
    assert "\n" not in str(info.value)
    (tmp_path / "junk.onnx").write_bytes(b"this is not an onnx file")
    with pytest.raises(ValueError, match=r"junk.onnx: onnxruntime cannot load it") as info:
        Session(tmp_path / "junk.onnx")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="no such file"):
        Session(tmp_path / "missing.onnx")


def test_two_threads_give_the_same_results(session, files):
    good, _ = files
    paths = good * 2
    expected = session.predict(paths, batch_size=4)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: session.predict(paths, batch_size=4), range(6)))
    assert all(r == expected for r in results)


# --------------------------------------------------------------------------------------------
# Files whose jpegfx metadata is corrupt or disagrees with the graph: one-line UsageErrors on load
# --------------------------------------------------------------------------------------------
def with_metadata(source, target, **changes) -> str:
    """A copy of the ONNX file ``source`` at ``target`` with metadata keys changed (None: removed)."""
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(changes)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {k: v for k, v in props.items() if v is not None})
    onnx.save(model, str(target))
    return str(target)


@pytest.mark.parametrize("changes, needle", [
    ({"samplings": "[[0, 0], [1, 1], [1, 1]]"}, "'samplings' bad: sampling factors must be 1..4"),
    ({"samplings": "[[2, 2], [1, 1]]"}, "'samplings' bad: expected 3 [v, h] pair(s)"),
    ({"samplings": "[[1, 1], [1, 1], [1, 1]]"}, "is not the layout of subsampling '4:2:0'"),
    ({"input_size": "64x40"}, "input 'y' has shape [N, 8, 6, 8, 8], the metadata's 64x40 YCbCr 4:2:0 needs "
                              "[N, 8, 5, 8, 8]"),
    ({"input_size": "0x48"}, "'input_size' bad"),
    ({"class_names": json.dumps(CLASSES[:5])}, "5 class_names for 10 classes"),
    ({"class_names": "[1, 2]"}, "'class_names' bad: expected a non-empty JSON list of strings"),
    ({"channels": "7"}, "'channels' bad: 7 is outside 1..3"),
    ({"normalize": "{broken"}, "'normalize' bad: not JSON"),
    ({"normalize": json.dumps({"mean": [0.5, 0.5], "std": [1, 1]})}, "'normalize' bad: expected 1 or 3 values"),
    ({"color_space": "gray"}, "'subsampling' bad: '4:2:0' does not go with color_space 'gray'"),
    ({"input_names": '["y", "zz"]'}, "'input_names' bad: unknown name(s) ['zz']"),
    ({"frequencies": "99"}, "'frequencies' bad: 99 is outside 1..15"),
    ({"relu": None}, "jpegfx metadata 'relu' missing"),
], ids=["samplings-zero", "samplings-count", "samplings-layout", "size-vs-graph", "size-zero", "class-names-short",
        "class-names-not-strings", "channels", "normalize-json", "normalize-count", "color-space", "input-names",
        "frequencies", "missing-key"])
def test_corrupt_metadata_is_one_line_usage_error(model, tmp_path, changes, needle):
    path = with_metadata(model[1], tmp_path / "corrupt.onnx", **changes)
    with pytest.raises(UsageError) as info:
        Session(path, providers=["CPUExecutionProvider"])
    message = str(info.value)
    assert "\n" not in message and message.startswith(path + ": "), message
    assert needle in message, message


def test_onnxruntime_run_failure_is_one_line_usage_error(model, files, tmp_path):
    """A graph whose block grid is symbolic passes the load checks; metadata claiming 64x40 then lets a
    64x40 file through to onnxruntime, which fails inside the graph: one line naming the model file."""
    onnx_model = onnx.load(str(model[1]))
    for node in onnx_model.graph.input:
        dims = node.type.tensor_type.shape.dim
        if len(dims) == 5:
            dims[1].dim_param, dims[2].dim_param = f"{node.name}_hb", f"{node.name}_wb"
    onnx.save(onnx_model, str(tmp_path / "symbolic.onnx"))
    path = with_metadata(tmp_path / "symbolic.onnx", tmp_path / "lying.onnx", input_size="64x40")
    session = Session(path, providers=["CPUExecutionProvider"])
    _, bad = files
    with pytest.raises(UsageError, match=r"onnxruntime cannot run the model") as info:
        session.predict([bad["size"]])
    assert str(info.value).startswith(path + ": ") and "\n" not in str(info.value)
    [prediction] = session.predict([bad["size"]], on_error="skip")
    assert not prediction.ok and "onnxruntime cannot run the model" in prediction.error


def test_session_argument_and_file_errors_are_usage_errors(tmp_path, model):
    with pytest.raises(UsageError, match="intra_op_threads must be a positive integer"):
        Session(model[1], intra_op_threads=0)
    with pytest.raises(UsageError, match="is a directory"):
        Session(tmp_path)


# --------------------------------------------------------------------------------------------
# Layouts that read alike but do not stack: every file gets its result or its own error
# --------------------------------------------------------------------------------------------
def gray_jpeg(path, seed: int, sampling: int = 1, size=(32, 32)) -> str:
    """A gray JPEG written by Pillow; ``sampling=2`` patches its one component's SOF sampling byte to
    H=V=2 (valid for a single-component scan, which decodes the same)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "JPEG", quality=80)
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc0")
    assert sof > 0 and data[sof + 9] == 1, "expected a baseline 1-component frame"
    data[sof + 11] = (sampling << 4) | sampling  # FF C0, length, precision, height, width, Nf, [id, HV, Tq]
    with open(path, "wb") as f:
        f.write(bytes(data))
    return str(path)


@pytest.fixture(scope="module")
def gray_session(tmp_path_factory):
    torch.manual_seed(0)
    spatial = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()
    jpeg_model = jpegfx.convert(spatial, 32, subsampling="gray").eval()
    path = export_onnx(jpeg_model, tmp_path_factory.mktemp("gray") / "gray.onnx")
    return Session(path, providers=["CPUExecutionProvider"], intra_op_threads=1)


def test_gray_files_with_different_sampling_factors_each_get_a_result(gray_session, files, tmp_path):
    one = gray_jpeg(tmp_path / "one.jpg", seed=1, sampling=1)
    two = gray_jpeg(tmp_path / "two.jpg", seed=2, sampling=2)
    a, b = read_jpeg(one), read_jpeg(two)
    assert a.subsampling == b.subsampling == "4:0:0" and b.components[0].sampling == (2, 2)
    with pytest.raises(JpegError):
        stack([a, b])  # the two do not stack, yet both fit the model: they run as two groups
    alone = {p: gray_session.predict([p], top_k=2)[0] for p in (one, two)}
    paths = [one, two, one]
    preds = gray_session.predict(paths, batch_size=8, top_k=2)
    assert [p.path for p in preds] == paths and all(p.ok for p in preds)
    assert [(p.indices, p.scores) for p in preds] == [(alone[p].indices, alone[p].scores) for p in paths]

    _, bad = files  # with bad neighbours and on_error="skip": a result or the file's own error, in order
    colour = tmp_path / "colour.jpg"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(colour, quality=80)
    paths = [one, bad["png"], two, str(colour), one]
    preds = gray_session.predict(paths, batch_size=8, top_k=2, on_error="skip")
    assert [p.path for p in preds] == paths
    assert [p.ok for p in preds] == [True, False, True, False, True]
    assert [(p.indices, p.scores) for p in preds if p.ok] == [(alone[p].indices, alone[p].scores)
                                                               for p in (one, two, one)]
    assert preds[1].error.startswith(bad["png"] + ": ") and "not a JPEG" in preds[1].error
    assert preds[3].error.startswith(f"{colour}: ") and "does not match the model's grayscale input" in preds[3].error
    assert all("\n" not in p.error for p in preds if not p.ok)


def test_wrong_layout_message_names_the_sampling_factors(session, files):
    _, bad = files
    with pytest.raises(JpegError) as info:
        session.check(bad["444"])
    assert "sampling factors (v, h) ((1, 1), (1, 1), (1, 1)) vs the model's ((2, 2), (1, 1), (1, 1))" in str(info.value)


@pytest.mark.skipif(shutil.which("cjpeg") is None, reason="needs cjpeg (Debian libjpeg-turbo-progs)")
def test_colour_files_with_different_sampling_factors_each_get_a_result(tmp_path):
    """4:4:4 written as 1x1 factors and as 2x1 factors on every component (libjxl's 444_1x2): the same
    layout, which does not stack; predict runs them apart and both agree with torch."""
    pixels = np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    ppm = tmp_path / "x.ppm"
    Image.fromarray(pixels).save(ppm)
    paths = []
    for name, sample in (("plain", "1x1,1x1,1x1"), ("1x2", "2x1,2x1,2x1")):
        out = tmp_path / f"{name}.jpg"
        subprocess.run(["cjpeg", "-quality", "85", "-sample", sample, "-outfile", str(out), str(ppm)], check=True)
        paths.append(str(out))
    batches = [read_jpeg(p) for p in paths]
    assert [b.subsampling for b in batches] == ["4:4:4", "4:4:4"]
    assert batches[1].components[0].sampling == (1, 2)
    torch.manual_seed(0)
    spatial = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    jpeg_model = jpegfx.convert(spatial, (40, 48), subsampling="4:4:4").eval()
    session = Session(export_onnx(jpeg_model, tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    preds = session.predict(paths + paths[:1], top_k=3, on_error="skip")
    assert [p.ok for p in preds] == [True, True, True]
    with torch.no_grad():
        want = torch.cat([jpeg_model(b) for b in batches]).softmax(dim=1)
    for p, row in zip(preds, want):
        np.testing.assert_allclose(p.scores, row[list(p.indices)].numpy(), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Serving without torch; checks from the header before decoding
# --------------------------------------------------------------------------------------------
SERVE_WITHOUT_TORCH = r"""
import contextlib, io, json, sys
for blocked in ("torch", "onnx", "PIL", "jpegfx.jpeg", "jpegfx.convert", "jpegfx.export"):
    sys.modules[blocked] = None  # importing any of these now raises ImportError
from jpegfx.runtime import Session
from jpegfx.cli import main
model, files = sys.argv[1], sys.argv[2:]
preds = Session(model, providers=["CPUExecutionProvider"]).predict(files, top_k=3)
out = io.StringIO()
with contextlib.redirect_stdout(out):
    status = main(["predict", model, *files, "--top-k", "3", "--json"])
with contextlib.redirect_stdout(io.StringIO()):
    info_status = main(["info", files[0], "--json"])
print(json.dumps({"api": [[p.indices, p.scores] for p in preds], "cli": json.loads(out.getvalue()),
                  "status": [status, info_status]}))
"""


def test_serving_needs_neither_torch_nor_the_converter(session, model, files):
    """Session, `jpegfx predict` and `jpegfx info` with torch, onnx, Pillow and the converter's
    modules made unimportable give the answers of the full install."""
    import sys

    good, _ = files
    proc = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_TORCH, str(model[1]), *good],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    want = session.predict(good, top_k=3)
    assert got["status"] == [0, 0]
    assert [tuple(i) for i, _ in got["api"]] == [p.indices for p in want]
    np.testing.assert_allclose([s for _, s in got["api"]], [p.scores for p in want], rtol=1e-6)
    assert [row["top"] for row in got["cli"]] == [list(p.indices) for p in want]


def test_wrong_size_or_layout_is_refused_before_decoding(session, files, counting_reader):
    good, bad = files
    preds = session.predict([bad["size"], bad["444"], bad["gray"], good[0]], on_error="skip")
    assert [p.ok for p in preds] == [False, False, False, True]
    assert counting_reader.decoded == 1  # only the good file's scans were decoded


def test_run_takes_coefficients(session, files):
    from jpegfx import reader

    good, _ = files
    batch = stack([read_jpeg(p) for p in good])
    coefs = [reader.read_coefficients(p) for p in good]
    np.testing.assert_array_equal(session.run(coefs), session.run(batch))
    np.testing.assert_array_equal(session.run(coefs[0]), session.run(coefs[:1]))
    assert session.check(coefs[0]) is coefs[0]


@pytest.mark.slow
def test_base_install_serves_without_torch(session, model, files, tmp_path):
    """`pip install jpegfx` (no extras) into a fresh venv: numpy + onnxruntime + the compiled reader,
    no torch; its `jpegfx predict` gives the full install's answers."""
    import venv

    good, _ = files
    root = os.path.join(os.path.dirname(__file__), "..")
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / ("Scripts" if os.name == "nt" else "bin")
    pip = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", root],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    listed = subprocess.run([str(bin_dir / "python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert "jpegfx" in names and "onnxruntime" in names and "torch" not in names
    run = subprocess.run([str(bin_dir / "jpegfx"), "predict", str(model[1]), *good, "--top-k", "3", "--json"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    want = session.predict(good, top_k=3)
    assert [row["top"] for row in json.loads(run.stdout)] == [list(p.indices) for p in want]


def test_check_reads_bytes_and_file_objects(session, files):
    from jpegfx import reader

    good, bad = files
    want = reader.read_coefficients(good[0])
    data = open(good[0], "rb").read()
    with open(good[0], "rb") as f:
        for got in (session.check(data), session.check(f)):
            assert all(np.array_equal(a, b) for a, b in zip(got.planes, want.planes))
    with pytest.raises(JpegError, match="^mine: image size 64x40"):
        session.check(open(bad["size"], "rb").read(), name="mine")


def test_session_takes_onnxruntime_options(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = Session(model[1], providers=["CPUExecutionProvider"], intra_op_threads=1, session_options=options)
    assert session.spec.input_size == SIZE
    with pytest.raises(UsageError, match="session_options must be an onnxruntime.SessionOptions"):
        Session(model[1], session_options={"threads": 1})


def test_tolerant_reads_files_with_libjpeg_warnings(session, model, files, tmp_path, capsys, caplog):
    """A JFIF APP0 with major version 2 (libjpeg: "unknown JFIF revision", djpeg exit status 2):
    refused by default, read with tolerant=True / --tolerant (the warning logged), same scan data."""
    from jpegfx.cli import main

    good, _ = files
    data = bytearray(open(good[0], "rb").read())
    i = data.find(b"JFIF\x00")
    data[i + 5] = 2
    path = tmp_path / "jfif2.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(JpegError, match="jfif2.jpg: .*unknown JFIF revision"):
        session.predict([str(path)])
    got = session.predict([str(path)], top_k=3, tolerant=True)[0]
    want = session.predict([good[0]], top_k=3)[0]
    assert got.ok and got.indices == want.indices and got.scores == want.scores
    assert main(["predict", str(model[1]), str(path), "--on-error", "skip", "--json"]) == 1
    caplog.clear()
    assert main(["predict", str(model[1]), str(path), "--tolerant", "--top-k", "3", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out.split("\n]\n", 1)[1])[0]["top"] == list(want.indices)
    assert any("unknown JFIF revision" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_predict_takes_bytes_and_file_objects(session, files):
    good, bad = files
    want = session.predict(good, top_k=3)
    with open(good[1], "rb") as f:
        got = session.predict([open(good[0], "rb").read(), f, good[2], b"not a jpeg"], top_k=3, on_error="skip")
    assert [p.path for p in got] == ["<bytes #0>", good[1], good[2], "<bytes #3>"]
    assert [p.indices for p in got[:3]] == [p.indices for p in want]
    assert got[3].error.startswith("<bytes #3>: not a JPEG file")
    with pytest.raises(JpegError, match=r"^<bytes #0>: image size 64x40"):
        session.predict([open(bad["size"], "rb").read()])
