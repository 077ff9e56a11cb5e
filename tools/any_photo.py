#!/usr/bin/env python3
"""Any photo in: jpegfx's preprocessing policy against the usual pixel pipeline, measured.

(a) jpegfx: read the coefficients, scale by the smallest N/8 that brings the shorter side to at
    least S, centre-crop C×C, normalise, block DCT (:mod:`jpegfx.preprocess`), then the converted
    network (onnxruntime, one exported file with ``preprocess=Policy(S, C)``);
(b) the usual pipeline: Pillow decode, resize the shorter side to exactly S (bilinear, antialiased),
    centre-crop C×C, normalise, then the spatial network (onnxruntime);
(b') as (b) but with Pillow's ``draft()`` (libjpeg's own DCT scaling by 1/2, 1/4, 1/8 before the
    resize): the fast decoder baseline.

Two workloads:

``fashion`` — the shipped, trained paper network (Fashion-MNIST, 32×32 gray). Test images are
    written as "photos": upscaled (bicubic) to a random size (shorter side 36–160, aspect 3:4–4:3),
    JPEG quality 50–95, gray or colour 4:4:4 / 4:2:2 / 4:2:0, seeded. Policy S=36, C=32. Reported:
    accuracy of (a) and (b) against the labels, their top-1 agreement, and how exact (a) is against
    its own pixel reference (the scaled float decode + crop + the spatial model).
``photos`` — ResNet-18 / ResNet-50 (random weights, randomised BN: no pretrained weights offline) on
    real photos (scikit-learn's china.jpg and flower.jpg, matplotlib's grace_hopper.jpg, the libjxl
    flower if installed) and photo-like crops of them at several sizes, qualities and layouts.
    Policy S=256, C=224. Reported: exactness of (a) against its pixel reference in torch and
    onnxruntime, top-1 agreement (a) vs (b) (random networks: agreement says little about accuracy),
    and the time per image of (a), (b) and (b') end to end, interleaved rounds.

    python tools/any_photo.py fashion --images 2000
    python tools/any_photo.py photos --models resnet18 resnet50 --repeat 5
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import glob
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import jpegfx
from jpegfx import datasets, models, preprocess, reader
from jpegfx.bench import _export_spatial, _ort_options, _ort_session
from jpegfx.export import export_onnx
from jpegfx.preprocess import Policy

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def pillow_pipeline(data: bytes, resize: int, crop: int, channels: int, normalize, draft: bool) -> np.ndarray:
    """(b)/(b'): decode, shorter side to exactly ``resize`` (bilinear, antialiased), centre crop, normalise."""
    with Image.open(io.BytesIO(data)) as image:
        mode = "L" if channels == 1 else "RGB"
        if draft:
            w, h = image.size
            scale = resize / min(w, h)
            image.draft(mode, (max(1, int(w * scale)), max(1, int(h * scale))))
        image = image.convert(mode)
        w, h = image.size  # torchvision's Resize(resize): shorter side resize, longer int(resize * long / short)
        size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        w, h = image.size
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
        x = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255.0
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    if normalize is not None:
        mean, std = (np.asarray(v, dtype=np.float32).reshape(-1, 1, 1) for v in normalize)
        x = (x - mean) / std
    return np.ascontiguousarray(x)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def _save(image: Image.Image, quality: int, layout: str) -> bytes:
    buf = io.BytesIO()
    if layout == "gray":
        image.convert("L").save(buf, format="JPEG", quality=quality)
    else:
        image.convert("RGB").save(buf, format="JPEG", quality=quality,
                                  subsampling={"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[layout])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# fashion: a trained network, photo-like test images
# --------------------------------------------------------------------------------------------
def fashion(args) -> dict:
    images, labels = datasets.load_fashion_mnist(split="test")
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(images), size=min(args.images, len(images)), replace=False)
    padded = datasets.pad_to_32(images[pick])
    files, layouts = [], ["gray", "4:4:4", "4:2:2", "4:2:0"]
    for img in padded:
        short = int(rng.integers(36, 161))
        aspect = float(rng.uniform(0.75, 4 / 3))
        w, h = (short, round(short * aspect)) if aspect >= 1 else (round(short / aspect), short)
        big = Image.fromarray(img).resize((w, h), Image.Resampling.BICUBIC)
        files.append(_save(big, int(rng.integers(50, 96)), layouts[int(rng.integers(0, 4))]))
    y = labels[pick]
    spatial = datasets.default_model()
    jpeg_model = jpegfx.convert(spatial, 32, domains=args.domains).eval()
    policy = Policy(resize=args.resize, crop=32, resample=args.resample, clamp=args.clamp)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(jpeg_model, Path(tmp) / "paper.onnx", preprocess=policy)
        sess = jpegfx.Session(path, providers=["CPUExecutionProvider"], session_options=_ort_options(args.threads))
        spatial_path = Path(tmp) / "spatial.onnx"
        _export_spatial(spatial, torch.zeros(1, 1, 32, 32), spatial_path)
        spatial_sess = _ort_session(spatial_path, args.threads)
        coefs = [reader.read_coefficients(f) for f in files]
        a = np.concatenate([sess.run(coefs[i:i + 256]) for i in range(0, len(coefs), 256)])
        xb = np.stack([pillow_pipeline(f, args.resize, 32, 1, None, False) for f in files])
        b = spatial_sess.run(None, {"x": xb})[0]
        xd = np.stack([pillow_pipeline(f, args.resize, 32, 1, None, True) for f in files])
        d = spatial_sess.run(None, {"x": xd})[0]
        with torch.no_grad():  # in parts: the float64 network on 10 000 images at once needs ~18 GB
            spatial64 = copy.deepcopy(spatial).double()
            ref = np.concatenate([spatial64(torch.from_numpy(np.stack(preprocess.model_pixels_many(
                coefs[i:i + 500], policy, (32, 32), 1)))).numpy() for i in range(0, len(coefs), 500)])
    return {
        "workload": "fashion", "images": len(files), "policy": policy.to_json(),
        "accuracy_jpegfx": float((a.argmax(1) == y).mean()), "accuracy_pillow": float((b.argmax(1) == y).mean()),
        "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        "accuracy_pillow_draft": float((d.argmax(1) == y).mean()),
        "top1_agreement_pillow_draft": float((a.argmax(1) == d.argmax(1)).mean()),
        "exactness_max_rel_vs_pixel_reference": _rel(a, ref),
        "top1_agreement_vs_pixel_reference": float((a.argmax(1) == ref.argmax(1)).mean()),
        "scales_used": {int(n): int(c) for n, c in zip(*np.unique(
            [policy.scale(c.header.size) for c in coefs], return_counts=True))},
    }


# --------------------------------------------------------------------------------------------
# photos: real photos, ResNets, timing
# --------------------------------------------------------------------------------------------
def _package_file(package: str, *parts: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    return path if os.path.exists(path) else None


def photo_files(seed: int) -> list[tuple[str, bytes]]:
    sources = [p for p in (_package_file("sklearn", "datasets", "images", "china.jpg"),
                           _package_file("sklearn", "datasets", "images", "flower.jpg"),
                           _package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")) if p]
    sources += glob.glob("/usr/share/libjxl-testdata/jxl/flower/flower.png.im_q85_420.jpg")
    if not sources:
        raise SystemExit("no photos: install scikit-learn or matplotlib")
    out = [(os.path.basename(p), Path(p).read_bytes()) for p in sources]
    rng = np.random.default_rng(seed)
    layouts = ["4:4:4", "4:2:2", "4:2:0", "gray"]
    for i, p in enumerate(sources):
        with Image.open(p) as image:
            image = image.convert("RGB")
            for j in range(6):
                w = int(rng.integers(257, min(image.width, 900) + 1))
                h = int(rng.integers(257, min(image.height, 900) + 1))
                left, top = int(rng.integers(0, image.width - w + 1)), int(rng.integers(0, image.height - h + 1))
                quality, layout = int(rng.integers(50, 96)), layouts[(i + j) % 4]
                out.append((f"{Path(p).stem}_crop{j}_{h}x{w}_q{quality}_{layout}.jpg",
                            _save(image.crop((left, top, left + w, top + h)), quality, layout)))
    return out


def photos(args) -> list[dict]:
    files = photo_files(args.seed)
    rows = []
    for name in args.models:
        torch.manual_seed(args.seed)
        spatial = models.create_model(name, num_classes=1000)
        models.randomize_batchnorm(spatial, torch.Generator().manual_seed(args.seed))
        spatial.eval()
        jpeg_model = jpegfx.convert(spatial, 224, normalize="imagenet", domains=args.domains).eval()
        policy = dataclasses.replace(Policy.imagenet(224, resample=args.resample), clamp=args.clamp)
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(jpeg_model, Path(tmp) / f"{name}.onnx", preprocess=policy)
            sess = jpegfx.Session(path, providers=["CPUExecutionProvider"], session_options=_ort_options(args.threads))
            spatial_path = Path(tmp) / f"{name}_spatial.onnx"
            _export_spatial(spatial, torch.zeros(1, 3, 224, 224), spatial_path)
            spatial_sess = _ort_session(spatial_path, args.threads)
            datas = [d for _, d in files]
            coefs = [reader.read_coefficients(d) for d in datas]
            a = np.concatenate([sess.run([c]) for c in coefs])
            with torch.no_grad():
                ta = jpeg_model(jpeg_model.prepare(coefs, policy)).numpy()
                ref = spatial(jpeg_model.spatial_prepare(coefs, policy)).numpy()
            b = np.concatenate([spatial_sess.run(None, {"x": pillow_pipeline(d, 256, 224, 3, IMAGENET, False)[None]})[0]
                                for d in datas])
            row = {"workload": "photos", "model": name, "domains": args.domains, "images": len(files),
                   "policy": policy.to_json(),
                   "exactness_torch_max_rel": _rel(ta, ref), "exactness_onnx_max_rel": _rel(a, ref),
                   "top1_exact_vs_pixel_reference": float((a.argmax(1) == ref.argmax(1)).mean()),
                   "top1_agreement_vs_pillow": float((a.argmax(1) == b.argmax(1)).mean()),
                   "distinct_top1_pillow": int(len(set(b.argmax(1).tolist())))}
            if args.repeat:
                row["timing"] = _time(files, sess, spatial_sess, args)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


def _time(files, sess, spatial_sess, args) -> dict:
    def jpegfx_path(data):
        return sess.predict([data], top_k=1)

    def pillow_path(data, draft=False):
        return spatial_sess.run(None, {"x": pillow_pipeline(data, 256, 224, 3, IMAGENET, draft)[None]})[0]

    paths = {"jpegfx (a)": jpegfx_path, "Pillow (b)": pillow_path,
             "Pillow draft (b')": lambda d: pillow_path(d, True)}
    rounds: dict[str, list[float]] = {k: [] for k in paths}
    datas = [d for _, d in files]
    for fn in paths.values():  # warm-up
        fn(datas[0])
    for _ in range(args.repeat):
        for key, fn in paths.items():
            start = time.perf_counter()
            for d in datas:
                fn(d)
            rounds[key].append((time.perf_counter() - start) / len(datas))
    base = rounds["Pillow (b)"]
    out = {}
    for key, ts in rounds.items():
        ratios = [t / b for t, b in zip(ts, base)]
        out[key] = {"ms_per_image": 1e3 * statistics.median(ts), "ratio_to_pillow": statistics.median(ratios),
                    "ratio_min": min(ratios), "ratio_max": max(ratios)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="workload", required=True)
    p = sub.add_parser("fashion")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--resize", type=int, default=36)
    p = sub.add_parser("photos")
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--repeat", type=int, default=5, help="timing rounds (0: no timing)")
    for p in sub.choices.values():
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--domains", choices=["jpeg", "pixels"], default="jpeg",
                       help="where the converted network keeps its values (see jpegfx.convert)")
        p.add_argument("--resample", choices=["bilinear"], default=None,
                       help="after the N/8 scaling, resample the shorter side to exactly S (default: no)")
        p.add_argument("--clamp", action="store_true", help="8-bit samples (Policy(clamp=True)), not the float decode")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = fashion(args) if args.workload == "fashion" else photos(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
