"""The ``jpegfx`` command line, end to end: in a subprocess (the first tests) and in-process through
``jpegfx.cli.main`` (the rest): output, --json, and one-line errors with exit status 2."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import DECODER_RTOL
from jpegfx import models


def run(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jpegfx", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jpegfx: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_convert_json_reports_layers_and_exact_verification():
    result = run("convert", "--model", "paper", "--check", "3", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["input_size"] == [32, 32] and summary["channels"] == 1
    assert summary["lowered"]["Conv2d"] == 9 and summary["lowered"]["BatchNorm2d"] == 9  # stem, 3 blocks, 2 projections
    assert summary["verification"]["ok"] and summary["verification"]["top1_agreement"] == 1.0
    assert summary["verification"]["max_rel_error"] < 1e-5
    real = summary["verification_real"]  # the bundled sample JPEGs (32×32) are checked too
    assert real["images"] == 8 and real["ok"] and real["top1_agreement"] == 1.0
    domains = {layer["node"]: layer["domains"] for layer in summary["layers"]}
    assert domains["conv1"] == ["jpeg", "pixels"]  # the stem hands its output to BN in pixels


def test_convert_no_elide_keeps_every_value_in_the_jpeg_domain():
    result = run("convert", "--model", "paper", "--check", "2", "--no-elide", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {tuple(layer["domains"]) for layer in summary["layers"]} == {("jpeg", "jpeg")}
    assert summary["verification"]["ok"] and summary["verification"]["max_rel_error"] < 1e-5


def test_convert_prints_a_table_and_approximate_modes_do_not_fail():
    result = run("convert", "--model", "resnet20", "--relu", "asm", "--frequencies", "4", "--check", "2")
    assert result.returncode == 0, result.stderr
    assert "asm(k=4)" in result.stdout and "-> approximate" in result.stdout


def test_convert_with_saved_weights(tmp_path):
    model = models.create_model("paper")
    path = tmp_path / "paper.pt"
    torch.save(model.state_dict(), path)
    result = run("convert", "--model", "paper", "--weights", str(path), "--check", "1", "--json")
    assert result.returncode == 0, result.stderr


def test_unknown_model():
    assert_one_line_error(run("convert", "--model", "vgg16"), "unknown model 'vgg16'", "resnet18")


def test_missing_weights_file(tmp_path):
    assert_one_line_error(run("convert", "--model", "paper", "--weights", str(tmp_path / "none.pt")),
                          "weights file not found")


def test_weights_with_wrong_keys(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save(models.create_model("resnet20").state_dict(), path)
    assert_one_line_error(run("convert", "--model", "paper", "--weights", str(path)),
                          "weights do not match the model")


class NotAStateDict:
    pass


def test_pickle_that_is_not_a_state_dict_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": NotAStateDict()}, f)
    assert_one_line_error(run("convert", "--model", "paper", "--weights", str(path)), "not a safe state_dict")


def test_ops_without_lowering_run_on_pixels_or_are_refused_under_strict(tmp_path):
    (tmp_path / "custom_net.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
                self.act = nn.GELU()
                self.up = nn.Upsample(scale_factor=2)
                self.pool = nn.AdaptiveAvgPool2d(1)
            def forward(self, x):
                return self.pool(self.up(self.act(self.conv(x)))).flatten(1)
        def build():
            return Net()
    """))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = run("convert", "--model", "custom_net:build", "--input-size", "16x16", "--strict", env=env)
    assert result.returncode == 2
    assert "Upsample (module) ×1 [up]" in result.stderr and "GELU" not in result.stderr  # GELU is a pixel op
    assert "Traceback" not in result.stderr
    result = run("convert", "--model", "custom_net:build", "--input-size", "16x16", "--json", env=env)
    assert result.returncode == 0, result.stderr  # without --strict: exact, the two ops on pixels
    summary = json.loads(result.stdout)
    assert summary["on_pixels"] == {"GELU (module)": 1, "Upsample (module)": 1}
    assert summary["verification"]["ok"]


def test_normalize_mean_std():
    result = run("convert", "--model", "resnet20", "--normalize", "0.5:0.4:0.3,0.2:0.25:0.3", "--check", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verification"]["ok"]
    bad = run("convert", "--model", "resnet20", "--normalize", "0.5,-1")
    assert bad.returncode == 2 and "std must be positive" in bad.stderr


@pytest.mark.parametrize("size", ["abc", "0x4"])
def test_bad_input_size(size):
    result = run("convert", "--model", "paper", "--input-size", size)
    assert result.returncode == 2 and "--input-size" in result.stderr


def test_help():
    result = run("convert", "--help")
    assert result.returncode == 0 and "--relu" in result.stdout


@pytest.fixture
def jpeg_files(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")
    paths = []
    for i, q in enumerate((80, 50)):
        path = tmp_path / f"crop{i}.jpg"
        Image.fromarray(photo[64 * i: 64 * i + 48, 100:140]).save(path, quality=q)
        paths.append(path)
    return paths


def test_info_reports_geometry_and_sparsity(jpeg_files):
    result = run("info", str(jpeg_files[0]), "--json")
    assert result.returncode == 0, result.stderr
    [info] = json.loads(result.stdout)  # a list, also for one file
    assert info["size"] == [48, 40] and info["subsampling"] == "4:2:0"
    y = info["components"][0]
    assert y["blocks"] == [6, 5] and 0.0 < y["zero_fraction"] < 1.0 and len(y["qtable"]) == 64


def test_check_verifies_on_jpeg_files(jpeg_files):
    result = run("check", "--model", "resnet20", "--normalize", "imagenet", *map(str, jpeg_files), "--json")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert len(files) == 2 and all(f["ok"] and f["top1_agree"] and f["max_rel_error"] < 1e-5 for f in files)


def test_check_rejects_non_jpeg(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    assert_one_line_error(run("check", "--model", "resnet20", str(bad)), "bad.jpg", "not a JPEG")


def test_info_missing_file(tmp_path):
    assert_one_line_error(run("info", str(tmp_path / "missing.jpg")), "no such file")


def test_bench_smoke_json():
    result = run("bench", "--models", "paper", "--batch", "2", "--warmup", "0", "--repeat", "1", "--json")
    assert result.returncode == 0, result.stderr
    [r] = json.loads(result.stdout)
    assert r["model"] == "paper" and r["batch"] == 2
    for key in ("read_coefficients", "decode_pillow", "jpeg_input_from_bytes", "end_to_end_jpeg", "jpeg_network_only",
                "spatial_network_only", "jpeg_network_only_all_jpeg", "ort_end_to_end_jpeg",
                "ort_end_to_end_pillow_spatial"):
        assert r["seconds"][key] > 0
    assert r["ratios"]["network_jpeg_over_spatial"] > 0 and r["ratios"]["input_jpeg_over_pillow_decode"] > 0
    assert r["layers"]
    assert r["ratios"]["ort_end_to_end_jpeg_over_pillow_spatial"] > 0
    assert r["device"] == "cpu"
    # what is timed computes the same functions: elided = all-JPEG = spatial, onnxruntime = torch, the
    # JPEG path's input = the float decode
    networks = {"elided_vs_all_jpeg", "jpeg_network_vs_spatial", "ort_jpeg_vs_torch", "ort_spatial_vs_torch",
                "jpeg_input_vs_float_decode"}
    assert networks <= set(r["checks"])
    assert all(r["checks"][key] <= 1e-4 for key in networks), r["checks"]
    # and every decoder baseline feeds the spatial model the image Pillow decodes
    decoders = set(r["checks"]) - networks
    assert decoders == {f"{name}_input_vs_pillow" for name in ("simplejpeg", "torchvision")
                        if importlib.util.find_spec(name)}
    assert all(r["checks"][key] <= DECODER_RTOL for key in decoders), r["checks"]


def test_convert_export_predict_end_to_end(tmp_path, jpeg_files):
    """convert -o → predict on JPEG files → JSON → same top-1 as the torch JPEG-domain model."""
    import jpegfx
    from jpegfx.jpeg import read_jpeg, stack

    torch.manual_seed(0)
    model = models.randomize_batchnorm(models.create_model("resnet20"), torch.Generator().manual_seed(0))
    weights = tmp_path / "r20.pt"
    torch.save(model.state_dict(), weights)
    onnx_path = tmp_path / "r20.onnx"
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(f"class{i}" for i in range(10)))
    result = run("convert", "--model", "resnet20", "--weights", str(weights), "--input-size", "48x40",
                 "--normalize", "imagenet", "--check", "1", "-o", str(onnx_path), "--class-names", str(names),
                 "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["onnx"] == str(onnx_path) and onnx_path.exists()
    result = run("predict", str(onnx_path), *map(str, jpeg_files), "--top-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [p["file"] for p in predictions] == list(map(str, jpeg_files))
    jpeg_model = jpegfx.convert(model.eval(), (48, 40), normalize="imagenet")
    with torch.no_grad():
        expected = jpeg_model(stack([read_jpeg(f) for f in jpeg_files])).argmax(1).tolist()
    assert [p["top"][0] for p in predictions] == expected
    assert predictions[0]["labels"][0] == f"class{expected[0]}"


def test_predict_wrong_size_file_is_one_line_error(tmp_path, jpeg_files):
    onnx_path = tmp_path / "r20.onnx"
    assert run("convert", "--model", "resnet20", "--input-size", "48x40", "--check", "0", "-o",
               str(onnx_path)).returncode == 0
    from PIL import Image

    wrong = tmp_path / "wrong.jpg"
    Image.new("RGB", (32, 32)).save(wrong)
    assert_one_line_error(run("predict", str(onnx_path), str(wrong)), "wrong.jpg", "does not match")


def test_predict_rejects_a_non_jpegfx_model(tmp_path, jpeg_files):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not onnx")
    result = run("predict", str(bogus), str(jpeg_files[0]))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_demo_runs_the_built_in_default(tmp_path):
    result = run("demo", "--out-dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # --json: the whole output is one JSON document
    assert summary["verification"]["ok"] and summary["verification"]["max_rel_error"] < 1e-5
    assert summary["total"] == 8 and summary["correct"] >= 7 and len(summary["predictions"]) == 8
    assert (tmp_path / "paper_fashion_mnist.onnx").exists()


# --------------------------------------------------------------------------------------------
# In-process runs of jpegfx.cli.main: exit status, stdout, and exactly one stderr line on errors
# --------------------------------------------------------------------------------------------
def call(capsys, *args: str) -> tuple[int, str, str]:
    from jpegfx.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(capsys, args, *fragments: str) -> str:
    """``main(args)`` exits 2 with one line ``jpegfx: error: …`` on stderr holding every fragment."""
    code, out, err = call(capsys, *args)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jpegfx: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def rgb_jpeg(path, size=(32, 32), seed=0, **options):
    """A random-content RGB JPEG written by Pillow (``size`` is (h, w))."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=options.pop("quality", 80), **options)
    return path


def test_rgb_zoo_model_converts_and_exports_after_the_gray_sample_check(tmp_path, capsys):
    """The 32x32 check on the bundled gray samples feeds a colour model another layout: the exported
    file must still be written (no module left in train mode), and it must run."""
    from jpegfx.runtime import Session

    path = tmp_path / "r20.onnx"
    code, out, err = call(capsys, "convert", "--model", "resnet20", "--check", "1", "-o", str(path), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["verification_real"]["ok"] and summary["onnx"] == str(path)
    session = Session(path, providers=["CPUExecutionProvider"])
    [prediction] = session.predict([rgb_jpeg(tmp_path / "x.jpg", subsampling=2)], top_k=3)
    assert prediction.ok and len(prediction.indices) == 3


def test_main_catches_only_jpegfx_errors(monkeypatch, capsys):
    """A bug (any exception that is not a JpegfxError) keeps its traceback instead of posing as a user error."""
    from jpegfx import cli
    from jpegfx.errors import UsageError

    assert issubclass(cli.CliError, UsageError)

    def buggy(args):
        raise TypeError("a bug in jpegfx")

    monkeypatch.setattr(cli, "cmd_info", buggy)
    with pytest.raises(TypeError, match="a bug in jpegfx"):
        cli.main(["info", "x.jpg"])


@pytest.fixture
def no_conversion(monkeypatch):
    """Fail the test if the command gets as far as converting (errors must come first)."""
    import importlib

    def refuse(*args, **kwargs):
        raise AssertionError("the command converted before refusing its input")

    monkeypatch.setattr(importlib.import_module("jpegfx.convert"), "convert", refuse)


@pytest.fixture
def factories(tmp_path, monkeypatch):
    """A module of model factories in a fresh current directory that is not on sys.path."""
    (tmp_path / "user_factories.py").write_text(textwrap.dedent("""
        from torch import nn
        def tiny():
            return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, 3))
        def broken():
            raise RuntimeError("no weights here")
        def number():
            return 42
        not_callable = 3
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    yield tmp_path
    sys.modules.pop("user_factories", None)


def test_factory_module_is_found_in_the_current_directory(factories, capsys):
    code, out, err = call(capsys, "convert", "--model", "user_factories:tiny", "--input-size", "16x16", "--check", "1",
                          "--json")
    assert code == 0, err
    assert json.loads(out)["verification"]["ok"] and err == ""


@pytest.mark.parametrize("spec, needle", [
    ("user_factories:broken", "model factory user_factories:broken raised RuntimeError: no weights here"),
    ("user_factories:number", "model factory user_factories:number returned 'int', not a torch.nn.Module"),
    ("user_factories:missing", "module 'user_factories' has no attribute 'missing'"),
    ("user_factories:not_callable", "'not_callable' is not callable (int)"),
    ("no_such_module_anywhere:build", "cannot import 'no_such_module_anywhere'"),
], ids=["raises", "not-a-module", "missing", "not-callable", "no-module"])
def test_bad_model_factory_is_one_line_error(factories, no_conversion, capsys, spec, needle):
    assert_user_error(capsys, ["convert", "--model", spec], needle)


def test_weights_directory_is_one_line_error(tmp_path, capsys):
    assert_user_error(capsys, ["convert", "--model", "paper", "--weights", str(tmp_path)], "is a directory")


@pytest.mark.parametrize("where, needle", [
    ("dir", "is a directory; give a file name"),
    ("under-file", "is not a directory"),
], ids=["output-is-a-directory", "output-under-a-file"])
def test_unwritable_output_is_refused_before_converting(tmp_path, no_conversion, capsys, where, needle):
    (tmp_path / "file").write_text("x")
    output = tmp_path if where == "dir" else tmp_path / "file" / "m.onnx"
    assert_user_error(capsys, ["convert", "--model", "paper", "-o", str(output)], str(output), needle)


def test_missing_class_names_file_is_refused_before_converting(tmp_path, no_conversion, capsys):
    missing = tmp_path / "classes.txt"
    assert_user_error(capsys, ["convert", "--model", "paper", "-o", str(tmp_path / "m.onnx"), "--class-names",
                               str(missing)], f"--class-names {missing}: cannot read it: No such file")


def test_wrong_number_of_class_names_is_refused_before_converting(tmp_path, no_conversion, capsys):
    names = tmp_path / "classes.txt"
    names.write_text("a\nb\n")
    assert_user_error(capsys, ["convert", "--model", "paper", "-o", str(tmp_path / "m.onnx"), "--class-names",
                               str(names)], "2 class names for a model with 10 classes")


@pytest.mark.parametrize("args, needle", [
    (["convert", "--model", "paper", "--check", "-1"], "argument --check: must be at least 0, got -1"),
    (["convert", "--model", "paper", "--frequencies", "16"], "argument --frequencies: must be in 1..15, got 16"),
    (["convert", "--model", "paper", "--channels", "2"], "argument --channels: invalid choice: 2"),
    (["convert", "--model", "paper", "--input-size", "0x4"], "argument --input-size: sizes must be positive"),
    (["predict", "m.onnx", "x.jpg", "--batch-size", "-2"], "argument --batch-size: must be at least 1, got -2"),
    (["predict", "m.onnx", "x.jpg", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["predict", "m.onnx", "x.jpg", "--top-k", "0"], "argument --top-k: must be at least 1, got 0"),
    (["bench", "--models", "vgg16"], "argument --models: invalid choice: 'vgg16'"),
    (["bench", "--batch", "0"], "argument --batch: must be at least 1, got 0"),
    (["bench", "--device", "gpu"], "argument --device: device 'gpu': expected cpu, cuda or cuda:N"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
], ids=["check-negative", "frequencies", "channels", "input-size", "batch-size-negative", "batch-size-zero", "top-k",
        "bench-model", "bench-batch", "bench-device", "command"])
def test_bad_option_values_are_one_line_errors(no_conversion, capsys, args, needle):
    assert_user_error(capsys, args, needle, "--help")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_bench_on_cuda_without_a_cuda_device_is_a_one_line_error(no_conversion, capsys):
    assert_user_error(capsys, ["bench", "--models", "paper", "--device", "cuda"],
                      "argument --device: device cuda requested, but this torch has no usable CUDA device")


def test_help_still_exits_0(capsys):
    code, out, _ = call(capsys, "predict", "--help")
    assert code == 0 and "--batch-size" in out


@pytest.mark.parametrize("command", ["convert", "check"])
def test_normalize_with_the_wrong_number_of_values_is_refused_before_converting(tmp_path, no_conversion, capsys,
                                                                                command):
    files = [] if command == "convert" else [str(rgb_jpeg(tmp_path / "x.jpg"))]
    assert_user_error(capsys, [command, "--model", "resnet20", "--normalize", "0.5:0.5,0.2:0.2", *files],
                      "normalisation mean has 2 value(s) for a model with 3 input channel(s)")


def test_demo_with_an_unusable_out_dir_is_refused_before_converting(tmp_path, no_conversion, capsys):
    (tmp_path / "file").write_text("x")
    out_dir = tmp_path / "file" / "out"
    assert_user_error(capsys, ["demo", "--out-dir", str(out_dir)], str(out_dir), "is not a directory")


def test_info_json_is_a_list_for_one_file_and_for_several(tmp_path, capsys):
    a, b = rgb_jpeg(tmp_path / "a.jpg"), rgb_jpeg(tmp_path / "b.jpg", size=(16, 24), seed=1)
    shapes = []
    for files in ([a], [a, b]):
        code, out, err = call(capsys, "info", *map(str, files), "--json")
        assert code == 0 and err == ""
        info = json.loads(out)
        assert isinstance(info, list) and [r["file"] for r in info] == list(map(str, files))
        shapes.append(sorted(info[0]))
    assert shapes[0] == shapes[1]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A small colour model (32x32, 4:2:0, 3 classes with names) exported to ONNX."""
    import jpegfx
    from torch import nn

    torch.manual_seed(0)
    spatial = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(4, 3)).eval()
    jpeg_model = jpegfx.convert(spatial, 32, subsampling="4:2:0").eval()
    return jpegfx.export_onnx(jpeg_model, tmp_path_factory.mktemp("tiny") / "tiny.onnx", class_names=["a", "b", "c"])


def test_predict_skip_reports_each_bad_file_once(tiny_onnx, tmp_path, capsys):
    good = rgb_jpeg(tmp_path / "good.jpg", subsampling=2)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    wrong = rgb_jpeg(tmp_path / "wrong.jpg", size=(16, 16), subsampling=2)
    code, out, err = call(capsys, "predict", str(tiny_onnx), str(good), str(bad), str(wrong), "--on-error", "skip")
    assert code == 1 and err == ""
    lines = out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(f"{good}: ")
    for line, path in zip(lines[1:], (bad, wrong)):
        assert line.startswith(f"{path}: error: ") and line.count(str(path)) == 1, line
    code, out, err = call(capsys, "predict", str(tiny_onnx), str(good), str(bad), "--on-error", "skip", "--json")
    assert code == 1 and err == ""
    results = json.loads(out)
    assert [r["error"] is None for r in results] == [True, False] and results[0]["labels"][0] in "abc"
    assert_user_error(capsys, ["predict", str(tiny_onnx), str(good), str(bad)], str(bad), "not a JPEG")


def test_predict_with_corrupt_metadata_is_one_line_error(tiny_onnx, tmp_path, capsys):
    import onnx

    model = onnx.load(str(tiny_onnx))
    for prop in model.metadata_props:
        if prop.key == "samplings":
            prop.value = "[[0, 0], [1, 1], [1, 1]]"
    corrupt = tmp_path / "corrupt.onnx"
    onnx.save(model, str(corrupt))
    good = rgb_jpeg(tmp_path / "good.jpg", subsampling=2)
    assert_user_error(capsys, ["predict", str(corrupt), str(good)], str(corrupt), "'samplings' bad")


def test_progress_only_on_a_terminal(tiny_onnx, tmp_path, capsys, monkeypatch):
    good = rgb_jpeg(tmp_path / "good.jpg", subsampling=2)
    code, _, err = call(capsys, "predict", str(tiny_onnx), str(good))
    assert code == 0 and err == ""  # not a terminal: nothing on stderr

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    from jpegfx.cli import main

    assert main(["predict", str(tiny_onnx), str(good)]) == 0
    text = terminal.getvalue()
    assert "predict: 1/1 file(s)" in text and text.endswith("\r")  # shown, then erased


def test_check_takes_any_mix_of_sizes_and_layouts(tmp_path, capsys):
    """One check over files of three sizes and three layouts: each verified at its own size (the model
    converted once per size), every one exact, sizes listed per file."""
    from PIL import Image

    a = rgb_jpeg(tmp_path / "a.jpg", subsampling=2)
    b = rgb_jpeg(tmp_path / "b.jpg", size=(24, 37), subsampling=0)
    c = tmp_path / "c.jpg"
    Image.open(rgb_jpeg(tmp_path / "c_rgb.jpg", size=(41, 30), seed=3)).convert("L").save(c, quality=90)
    code, out, err = call(capsys, "check", "--model", "resnet20", str(a), str(b), str(c), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert [f["size"] for f in summary["files"]] == [[32, 32], [24, 37], [41, 30]]
    assert summary["ok"] and all(f["ok"] and f["top1_agree"] for f in summary["files"])
    assert summary["skipped"] == 0


def test_check_skips_unreadable_files_once_each_and_approximate_modes_report_the_error(tmp_path, capsys):
    a = rgb_jpeg(tmp_path / "a.jpg")
    b = tmp_path / "b.jpg"
    b.write_bytes(Path(rgb_jpeg(tmp_path / "b_full.jpg", size=(24, 32))).read_bytes()[:300])  # truncated
    c = rgb_jpeg(tmp_path / "c.jpg", seed=2)
    code, out, err = call(capsys, "check", "--model", "resnet20", "--relu", "asm", "--frequencies", "4",
                          str(a), str(b), str(c), "--on-error", "skip")
    assert code == 1 and err == ""  # 1: a file was skipped
    lines = out.strip().splitlines()
    assert len(lines) == 4 and sum(str(b) in line for line in lines) == 1
    assert lines[1].startswith(f"{b}: skipped: truncated JPEG")
    assert "max rel error" in lines[-1] and "no tolerance applies" in lines[-1]
    assert "within tolerance" not in out and "FAILED" not in out
    code, out, err = call(capsys, "check", "--model", "resnet20", "--relu", "asm", "--frequencies", "4",
                          str(a), str(b), str(c), "--on-error", "skip", "--json")
    summary = json.loads(out)
    assert summary["tolerance"] is None and summary["ok"] is None and summary["skipped"] == 1
    assert [f["error"] is None for f in summary["files"]] == [True, False, True]
    assert summary["max_rel_error"] == max(f["max_rel_error"] for f in summary["files"] if f["error"] is None) > 0
    assert all(f["ok"] is None for f in summary["files"])


def test_zoo_names_match_the_zoo():
    """The CLI names the zoo without importing torch; the names are the zoo's own."""
    from jpegfx import cli

    assert set(cli.ZOO) == set(models.MODELS)


def test_info_tolerant_lists_libjpeg_warnings(tmp_path, capsys):
    """info refuses a file with a libjpeg warning (JFIF major version 2) unless --tolerant, which
    lists the warning; djpeg exits 2 (warnings) on the same file."""
    import io
    import shutil
    import subprocess

    import numpy as np
    from PIL import Image

    from jpegfx import cli

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 24, 3), 90, np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    data[data.find(b"JFIF\x00") + 5] = 2
    path = tmp_path / "jfif2.jpg"
    path.write_bytes(bytes(data))
    if shutil.which("djpeg"):
        assert subprocess.run(["djpeg", "-outfile", os.devnull, str(path)], capture_output=True).returncode == 2
    assert cli.main(["info", str(path), "--json"]) == 2
    assert "unknown JFIF revision" in capsys.readouterr().err
    assert cli.main(["info", str(path), "--tolerant", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["size"] == [16, 24] and any("unknown JFIF revision" in w for w in row["warnings"])


def test_predict_searches_subfolders(tiny_onnx, tmp_path, capsys):
    """A folder tree (class folders, dated folders) is searched below the top level, in path order;
    hidden files and folders are left out."""
    for sub in ("b", "a/deeper", ".cache"):
        (tmp_path / "photos" / sub).mkdir(parents=True)
    paths = [rgb_jpeg(tmp_path / "photos" / sub / name, subsampling=2)
             for sub, name in (("b", "2.jpg"), ("a", "1.JPEG"), ("a/deeper", "0.jpg"))]
    rgb_jpeg(tmp_path / "photos" / ".cache" / "x.jpg", subsampling=2)
    code, out, err = call(capsys, "predict", str(tiny_onnx), str(tmp_path / "photos"), "--json")
    assert code == 0 and err == ""
    assert [r["file"] for r in json.loads(out)] == sorted(str(p) for p in paths)


def test_output_into_a_closed_pipe_is_not_a_traceback(tiny_onnx, tmp_path):
    """`jpegfx predict … | head -1`: the reader closes the pipe early; jpegfx stops quietly."""
    import subprocess
    import sys

    files = [str(rgb_jpeg(tmp_path / f"{i}.jpg", subsampling=2)) for i in range(4)]
    proc = subprocess.Popen([sys.executable, "-m", "jpegfx", "predict", str(tiny_onnx), *files],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before jpegfx writes anything: its first line meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err, err
