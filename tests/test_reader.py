"""jpegfx.reader: the libjpeg-turbo binding's guarantees, each against an outside reference.

* every libjpeg warning is an error (djpeg's exit status 2 says the same files are not clean),
  all warnings are seen in tolerant mode, and nothing is ever printed;
* limits come from the header (memory, pixels) or stop the decode early (scans), and only regular
  files are opened (a FIFO does not block);
* calls are independent: threads and forked processes give exactly the serial answers;
* no memory is kept after a failed read (APPn payloads are never saved);
* a seeded fuzz run cross-checked with djpeg: no crash, hang, traceback or corrupt file read as good.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from PIL import Image

from jpegfx import reader
from jpegfx.errors import JpegError, JpegfxError
from jpegfx.jpeg import read_jpeg

DJPEG = shutil.which("djpeg")
TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")


def smooth_image(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 3 + yy, yy * 2 + 40, (xx * yy) % 256], -1) + rng.integers(0, 16, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def pillow_jpeg(img: np.ndarray | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    kw.setdefault("quality", 85)
    Image.fromarray(smooth_image() if img is None else img).save(buf, format="JPEG", **kw)
    return buf.getvalue()


def corrupt_scan(data: bytes) -> bytes:
    """A stray marker (RST5, no restart interval) 8 bytes into the first scan's entropy-coded data:
    libjpeg warns "premature end of data segment" (garbage bytes alone may still decode)."""
    i = data.find(b"\xff\xda")
    start = i + 2 + ((data[i + 2] << 8) | data[i + 3])
    m = start + 8
    return data[:m] + b"\xff\xd5" + data[m:]


def jfif_major(data: bytes, major: int) -> bytes:
    """Set the JFIF APP0 version's major byte (Pillow writes 1.01)."""
    i = data.find(b"JFIF\x00")
    assert i > 0
    d = bytearray(data)
    d[i + 5] = major
    return bytes(d)


def djpeg_status(data: bytes, tmp_path) -> int:
    if DJPEG is None:
        pytest.skip("djpeg (libjpeg-turbo-progs) is not installed")
    path = tmp_path / "djpeg_input.jpg"
    path.write_bytes(data)
    return subprocess.run([DJPEG, "-outfile", os.devnull, str(path)], capture_output=True).returncode


def outcome(data: bytes) -> str:
    """What a read gives, as a comparable string: a digest of the arrays, or the error."""
    try:
        c = reader.read_coefficients(data)
    except JpegError as exc:
        return f"error: {exc}"
    return "ok " + " ".join(str(hash(p.tobytes())) + ":" + str(hash(q.tobytes())) for p, q in zip(c.planes, c.qtables))


# --------------------------------------------------------------------------------------------
# Sources, header-only reads and the data contract
# --------------------------------------------------------------------------------------------
def test_sources_and_header_agree(tmp_path):
    data = pillow_jpeg(subsampling=1)  # 4:2:2
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    a, b = reader.read_coefficients(data), reader.read_coefficients(path)
    with open(path, "rb") as f:
        c = reader.read_coefficients(f)
    for x in (b, c):
        assert x.header == a.header
        assert all(np.array_equal(p, q) for p, q in zip(a.planes, x.planes))
    head = reader.read_header(path)
    assert head == a.header
    assert head.subsampling == "4:2:2" and head.size == (64, 80) and head.color_space == "ycbcr"
    assert [c.blocks for c in head.components] == [(8, 10), (8, 5), (8, 5)]
    assert a.planes[0].shape == (8, 10, 8, 8) and a.planes[0].dtype == np.int16
    assert a.qtables[0].shape == (64,) and a.qtables[0].dtype == np.int32
    assert a.scans == 1 and a.warnings == ()
    assert reader.backend().startswith("libjpeg")


def test_header_only_does_not_decode_the_scan():
    """A corrupt scan is found by read_coefficients, not by read_header (it never decodes)."""
    bad = corrupt_scan(pillow_jpeg())
    assert reader.read_header(bad).size == (64, 80)
    with pytest.raises(JpegError, match="corrupt"):
        reader.read_coefficients(bad)


# --------------------------------------------------------------------------------------------
# Every libjpeg warning is an error (regression: a benign first warning hid later corruption)
# --------------------------------------------------------------------------------------------
def test_unknown_jfif_revision_is_an_error_unless_tolerant(tmp_path):
    data = jfif_major(pillow_jpeg(), 2)
    assert djpeg_status(data, tmp_path) == 2  # libjpeg-turbo's own tool: a warning, not clean
    with pytest.raises(JpegError, match="unknown JFIF revision"):
        reader.read_coefficients(data)
    ok = reader.read_coefficients(data, tolerant=True)
    assert any("JFIF revision" in w for w in ok.warnings)
    clean = reader.read_coefficients(pillow_jpeg())
    assert all(np.array_equal(p, q) for p, q in zip(ok.planes, clean.planes))


def test_corruption_after_a_benign_warning_is_seen(tmp_path):
    """JFIF major byte 2 (libjpeg's first warning, once only printed) and a corrupt scan."""
    data = corrupt_scan(jfif_major(pillow_jpeg(), 2))
    assert djpeg_status(data, tmp_path) == 2
    with pytest.raises(JpegError):
        reader.read_coefficients(data)
    with pytest.raises(JpegError):
        read_jpeg(data)
    tolerant = reader.read_coefficients(data, tolerant=True)
    assert any("JFIF" in w for w in tolerant.warnings)
    assert any("Corrupt JPEG data" in w for w in tolerant.warnings), tolerant.warnings


def test_nothing_is_printed(capfd):
    for data in (corrupt_scan(pillow_jpeg()), jfif_major(pillow_jpeg(), 3), b"\xff\xd8garbage"):
        with pytest.raises(JpegError):
            reader.read_coefficients(data)
        try:
            reader.read_coefficients(data, tolerant=True)
        except JpegError:
            pass
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_errors_are_jpegfx_errors():
    with pytest.raises(JpegfxError):
        reader.read_coefficients(b"not a jpeg")
    with pytest.raises(ValueError):  # and ValueErrors, for older callers
        reader.read_coefficients(b"not a jpeg")


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------
def repeated_last_scan(data: bytes, copies: int) -> bytes:
    """A progressive file with its last scan (SOS segment + entropy data) repeated before EOI."""
    last = data.rfind(b"\xff\xda")
    end = data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * copies + data[end:]


def test_scan_limit():
    data = pillow_jpeg(progressive=True)
    scans = reader.read_coefficients(data).scans
    assert scans > 3
    with pytest.raises(JpegError, match="more than 3 scans"):
        reader.read_coefficients(data, max_scans=3)
    assert reader.read_coefficients(data, max_scans=scans).scans == scans
    # A scan bomb: 1500 extra scans are refused at the default limit (1000), tolerant or not.
    bomb = repeated_last_scan(data, 1500)
    with pytest.raises(JpegError, match=f"more than {reader.MAX_SCANS} scans"):
        reader.read_coefficients(bomb, tolerant=True)
    with pytest.raises(JpegError):
        reader.read_coefficients(bomb)


def patched_size(data: bytes, height: int, width: int) -> bytes:
    i = data.find(b"\xff\xc0")
    d = bytearray(data)
    d[i + 5 : i + 9] = bytes([height >> 8, height & 255, width >> 8, width & 255])
    return bytes(d)


def test_memory_limit_from_the_header():
    """A small file declaring 10000×10000 4:4:4 (1.2 GB of coefficients): refused before decoding."""
    data = patched_size(pillow_jpeg(subsampling=0), 10000, 10000)
    assert len(data) < 20_000
    assert reader.read_header(data).size == (10000, 10000)  # the header alone is cheap
    with pytest.raises(JpegError, match="coefficient memory"):
        reader.read_coefficients(data)
    with pytest.raises(JpegError, match="max_pixels"):
        reader.read_coefficients(data, max_pixels=10**7)
    small = pillow_jpeg(subsampling=0)
    need = 4 * 3 * 64 * 80  # 4 bytes per sample (libjpeg's array + the copy), three components
    assert reader.read_coefficients(small, max_bytes=need).header.size == (64, 80)
    with pytest.raises(JpegError, match="coefficient memory"):
        reader.read_coefficients(small, max_bytes=need - 1)


@pytest.mark.parametrize("name", ["max_pixels", "max_bytes", "max_scans", "max_file_bytes"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_bad_limits_are_refused(name, value):
    with pytest.raises(JpegError, match=name):
        reader.read_coefficients(pillow_jpeg(), **{name: value})


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_and_directory_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    result = []

    def read():
        try:
            reader.read_coefficients(fifo)
        except JpegError as exc:
            result.append(str(exc))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert result and "not a regular file" in result[0] and "x.jpg" in result[0]
    with pytest.raises(JpegError, match="a directory"):
        reader.read_coefficients(tmp_path)


def test_file_size_limit(tmp_path):
    path = tmp_path / "big.jpg"
    data = pillow_jpeg()
    path.write_bytes(data)
    with pytest.raises(JpegError, match="max_file_bytes"):
        reader.read_coefficients(path, max_file_bytes=len(data) - 1)
    with pytest.raises(JpegError, match="max_file_bytes"):
        reader.read_coefficients(io.BytesIO(data), max_file_bytes=len(data) - 1)
    assert reader.read_coefficients(path, max_file_bytes=len(data)).header.size == (64, 80)


def test_fill_bytes_are_legal_and_fast():
    """Any number of 0xFF fill bytes may precede a marker (T.81 B.1.1.2): read, and equal."""
    data = pillow_jpeg()
    i = data.find(b"\xff\xda")
    padded = data[:i] + b"\xff" * 5_000_000 + data[i:]
    assert outcome(padded) == outcome(data)


# --------------------------------------------------------------------------------------------
# Independence of calls: threads and forked processes
# --------------------------------------------------------------------------------------------
def mixed_inputs() -> list[bytes]:
    good = [pillow_jpeg(smooth_image(48 + 8 * i, 64, seed=i), subsampling=i % 3) for i in range(4)]
    bad = [corrupt_scan(g) for g in good] + [g[: len(g) // 2] for g in good] + [jfif_major(good[0], 2)]
    return good + bad


def test_threads_give_the_serial_answers():
    inputs = mixed_inputs()
    expected = [outcome(d) for d in inputs]
    assert sum(e.startswith("ok") for e in expected) == 4
    order = np.random.default_rng(0).permutation(np.tile(np.arange(len(inputs)), 25))
    mismatches: list[str] = []

    def work(offset: int) -> None:
        for i in np.roll(order, offset * 37):
            got = outcome(inputs[i])
            if got != expected[i]:
                mismatches.append(f"input {i}: {got[:80]} != {expected[i][:80]}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not mismatches, mismatches[:5]


def test_a_reused_decompressor_reads_like_a_fresh_one():
    """Each thread keeps its decompressor between calls: after every kind of failure (corrupt scan,
    truncation, scan limit, memory limit, pixel limit, a header-only read, a tolerant read with
    warnings) the next file reads exactly as it does in a fresh process."""
    good = [pillow_jpeg(smooth_image(40 + 8 * i, 56, seed=i), subsampling=i % 3) for i in range(3)]
    progressive = pillow_jpeg(progressive=True)
    code = ("import sys, pickle; from jpegfx import reader; "
            "data = pickle.loads(sys.stdin.buffer.read()); "
            "sys.stdout.buffer.write(pickle.dumps([(reader.read_coefficients(d).planes, "
            "reader.read_coefficients(d).qtables) for d in data]))")
    fresh = pickle.loads(subprocess.run([sys.executable, "-c", code], input=pickle.dumps(good + [progressive]),
                                        capture_output=True, check=True).stdout)
    failures = [
        lambda: reader.read_coefficients(corrupt_scan(good[0])),
        lambda: reader.read_coefficients(good[1][: len(good[1]) // 2]),
        lambda: reader.read_coefficients(repeated_last_scan(progressive, 50), max_scans=5),
        lambda: reader.read_coefficients(patched_size(pillow_jpeg(subsampling=0), 10000, 10000)),
        lambda: reader.read_coefficients(good[2], max_pixels=10),
        lambda: reader.read_header(good[0]),
        lambda: reader.read_coefficients(corrupt_scan(good[2]), tolerant=True),
    ]
    for failure in failures:
        try:
            failure()
        except JpegError:
            pass
        for data, (planes, tables) in zip(good + [progressive], fresh):
            got = reader.read_coefficients(data)
            assert all(np.array_equal(a, b) for a, b in zip(got.planes, planes))
            assert all(np.array_equal(a, b) for a, b in zip(got.qtables, tables))
            assert got.warnings == ()


RSS_PRELUDE = """
import io, threading
import numpy as np
from PIL import Image
from jpegfx import reader
from jpegfx.errors import JpegError

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

def jpeg(side):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()
"""


def rss_growth(body: str) -> int:
    """Bytes of RSS a fresh interpreter gains running ``body`` (after RSS_PRELUDE; ``body`` sets
    ``start = rss()`` once warm and prints ``rss() - start`` at the end)."""
    proc = subprocess.run([sys.executable, "-c", RSS_PRELUDE + textwrap.dedent(body)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


THREAD_EXIT_BODY = """
    data = jpeg(512)
    def one():
        reader.read_coefficients(data)
    for i in range(3000):
        t = threading.Thread(target=one)
        t.start()
        t.join()
        if i == 200:
            start = rss()
    print(rss() - start)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to measure memory")
def test_threads_that_exit_free_their_decompressor():
    growth = rss_growth(THREAD_EXIT_BODY)
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB over 2800 short-lived reading threads"


def _child_outcomes(indices: list[int]) -> list[str]:
    inputs = mixed_inputs()
    return [outcome(inputs[i]) for i in indices]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork() here")
def test_forked_processes_and_threads_at_once_give_the_serial_answers():
    """2 processes forked after the parent has read files, reading while 4 threads of the parent read
    the same good and corrupt files: every answer is the serial one."""
    inputs = mixed_inputs()
    expected = [outcome(d) for d in inputs]  # the parent has read files before forking
    indices = [int(i) for i in np.random.default_rng(1).permutation(np.tile(np.arange(len(inputs)), 10))]
    mismatches: list[str] = []

    def work(offset: int) -> None:
        for i in np.roll(indices, offset * 11):
            if outcome(inputs[i]) != expected[i]:
                mismatches.append(f"thread {offset}, input {i}")

    with multiprocessing.get_context("fork").Pool(2) as pool:
        pending = pool.map_async(_child_outcomes, [indices, indices[::-1]])
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results = pending.get(timeout=300)
    assert not mismatches, mismatches[:5]
    assert results[0] == [expected[i] for i in indices]
    assert results[1] == [expected[i] for i in indices[::-1]]


# --------------------------------------------------------------------------------------------
# No memory kept after failures (regression: saved APP payloads leaked when the header failed)
# --------------------------------------------------------------------------------------------
LEAK_BODY = """
    good = jpeg(16)
    app = b"\\xff\\xe1\\xff\\xff" + bytes(65533)
    sof = good.find(b"\\xff\\xc0")
    bad = good[:2] + app * 47 + good[2:sof] + b"\\xff\\xc0\\x00\\x03\\x00"  # header fails after the APPs
    for i in range(301):
        try:
            reader.read_coefficients(bad)
        except JpegError:
            pass
        if i == 20:
            start = rss()
    print(rss() - start)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to measure memory")
def test_failed_reads_keep_no_memory():
    growth = rss_growth(LEAK_BODY)
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.0f} MB over 280 failed reads of a 3 MB file"


# --------------------------------------------------------------------------------------------
# Fuzzing, cross-checked with djpeg (the full count: python tools/fuzz_reader.py --count 10000)
# --------------------------------------------------------------------------------------------
def test_fuzz_against_djpeg():
    if DJPEG is None:
        pytest.skip("djpeg (libjpeg-turbo-progs) is not installed")
    sys.path.insert(0, TOOLS)
    try:
        import fuzz_reader
    finally:
        sys.path.remove(TOOLS)
    report = fuzz_reader.fuzz(300, seed=20261130, timeout=20)
    outcomes = report["outcomes"]
    assert {k: outcomes[k] for k in fuzz_reader.BAD} == {k: 0 for k in fuzz_reader.BAD}, report
    assert outcomes["read"] > 30 and outcomes["refused"] > 100, report


# --------------------------------------------------------------------------------------------
# read_batches: many files straight into stacked arrays
# --------------------------------------------------------------------------------------------
def test_read_batches_groups_by_layout_and_keeps_every_file(tmp_path):
    """Files of three layouts (one of them of the same block grid but another size), corrupt and
    truncated files, paths and bytes: each good file lands in its layout's batch, in order, equal to
    read_coefficients; each bad one has its own error."""
    a = [pillow_jpeg(smooth_image(32, 48, seed=i), subsampling=2) for i in range(3)]
    other = pillow_jpeg(smooth_image(40, 40, seed=7), subsampling=0)
    same_grid = pillow_jpeg(smooth_image(30, 45, seed=8), subsampling=2)  # 32x48's block grids, another size
    gray = pillow_jpeg(smooth_image(32, 48, seed=9)[..., 0])
    path = tmp_path / "a2.jpg"
    path.write_bytes(a[2])
    sources = [a[0], corrupt_scan(a[1]), other, a[1], same_grid, gray, a[0][:300], str(path)]
    batches, errors = reader.read_batches(sources)
    assert sorted(errors) == [1, 6]
    assert "corrupt" in str(errors[1]) and "truncated" in str(errors[6])
    assert [b.indices for b in batches] == [(0, 3, 7), (2,), (4,), (5,)]
    for batch in batches:
        assert all(p.shape[0] == len(batch.indices) for p in batch.planes + batch.qtables)
        for k, i in enumerate(batch.indices):
            want = reader.read_coefficients(sources[i])
            assert batch.header == want.header
            got = batch.coefficients(k)
            assert all(np.array_equal(x, y) for x, y in zip(got.planes, want.planes))
            assert all(np.array_equal(x, y) for x, y in zip(got.qtables, want.qtables))


def test_read_batches_refuses_layouts_from_the_header(counting_reader):
    """``accept`` sees each new layout's header once; files of a refused layout are never decoded."""
    small = [pillow_jpeg(smooth_image(32, 32, seed=i)) for i in range(2)]
    big = [pillow_jpeg(smooth_image(64, 64, seed=i)) for i in range(3)]
    seen = []

    def accept(header):
        seen.append(header.size)
        return None if header.size == (64, 64) else "not 64x64"

    batches, errors = reader.read_batches([small[0], big[0], small[1], big[1], big[2]], accept=accept)
    assert seen == [(32, 32), (64, 64)]
    assert [b.indices for b in batches] == [(1, 3, 4)] and sorted(errors) == [0, 2]
    assert all(str(e) == "not 64x64" for e in errors.values())
    assert counting_reader.decoded == 3


def test_read_batches_tolerant_and_limits():
    good = pillow_jpeg(smooth_image(32, 32))
    bad = corrupt_scan(good)
    batches, errors = reader.read_batches([bad, good], tolerant=True)
    assert not errors and [b.indices for b in batches] == [(0, 1)]
    batches, errors = reader.read_batches([good, bad], max_pixels=100)
    assert not batches and sorted(errors) == [0, 1] and "max_pixels" in str(errors[0])
    assert reader.read_batches([]) == ([], {})


def test_read_batches_from_threads_give_the_serial_answers():
    """read_batches decodes a whole group without the GIL: 4 threads at once, the serial answers."""
    inputs = mixed_inputs()

    def answer():
        batches, errors = reader.read_batches(inputs)
        return ([(b.indices, [p.tobytes() for p in b.planes], [q.tobytes() for q in b.qtables]) for b in batches],
                {i: str(e) for i, e in errors.items()})

    expected = answer()
    assert len(expected[1]) == len(inputs) - 4
    results: list = []
    threads = [threading.Thread(target=lambda: results.extend(answer() for _ in range(20))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(r == expected for r in results)
