"""The ``jpegfx`` command line, end to end in a subprocess: output, --json, and one-line errors."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

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
    info = json.loads(result.stdout)
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
    for key in ("read_coefficients", "decode_pillow", "end_to_end_jpeg", "jpeg_network_only", "spatial_network_only",
                "jpeg_network_only_all_jpeg", "ort_end_to_end_jpeg", "ort_end_to_end_pillow_spatial"):
        assert r["seconds"][key] > 0
    assert r["ratios"]["network_jpeg_over_spatial"] > 0 and r["layers"]
    assert r["ratios"]["ort_end_to_end_jpeg_over_pillow_spatial"] > 0
    # what is timed computes the same functions: elided = all-JPEG = spatial, onnxruntime = torch
    assert set(r["checks"]) == {"elided_vs_all_jpeg", "jpeg_network_vs_spatial", "ort_jpeg_vs_torch",
                                "ort_spatial_vs_torch"}
    assert all(v <= 1e-4 for v in r["checks"].values()), r["checks"]


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
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["verification"]["ok"] and summary["verification"]["max_rel_error"] < 1e-5
    assert summary["total"] == 8 and summary["correct"] >= 7
    assert (tmp_path / "paper_fashion_mnist.onnx").exists()
