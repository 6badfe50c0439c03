"""Files: save a path, bytes, text, JSON, numpy images, torch state, figures; list, download, delete;
checksums; copies taken at call time; the user's files are never deleted."""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from onthefly.tracking import InvalidArgument, NotFound


def test_save_path_bytes_text_json_with_checksums(make_exp, tmp_path):
    exp = make_exp()
    source = tmp_path / "notes.txt"
    source.write_bytes(b"from disk")
    saved = exp.files("docs").save(str(source))
    os.remove(source)  # the caller may delete the source right after the call
    blob = exp.files("docs").save(b"\x00\x01raw", to="raw.bin")
    exp.files("docs").save_text("héllo ✓", to="hello.txt")
    exp.files("cfg").save_json({"lr": 0.1, "bad": float("nan")}, to="config.json")
    assert (saved["path"], saved["filename"]) == ("/docs", "notes.txt")  # ML-Dash's folder + name
    assert saved["checksum"] == hashlib.sha256(b"from disk").hexdigest()
    assert blob["sizeBytes"] == 5
    assert exp.files("docs/notes.txt").read_bytes() == b"from disk"
    assert exp.files("docs/hello.txt").read_text() == "héllo ✓"
    raw_json = exp.files("cfg/config.json").read_bytes().decode()
    json.loads(raw_json, parse_constant=lambda c: pytest.fail(f"bare {c} in a stored JSON file"))
    assert np.isnan(exp.files("cfg/config.json").read_json()["bad"])
    listed = exp.files("docs").list()
    assert sorted(f["filename"] for f in listed) == ["hello.txt", "notes.txt", "raw.bin"]
    assert all(len(f["checksum"]) == 64 and f["id"] for f in listed)
    assert len({f["id"] for f in exp.files.list()}) == 4
    assert [f["filename"] for f in exp.files("docs").list("*.txt")] == ["notes.txt", "hello.txt"]


def test_numpy_images_png_lossless_and_jpeg_with_quality(make_exp):
    exp = make_exp()
    pixels = (np.arange(16 * 16 * 3) % 256).astype(np.uint8).reshape(16, 16, 3)
    exp.files("frames").save_image(pixels, to="frame.png")
    exp.files("frames").save_image(pixels, to="frame.jpg", quality=85)
    exp.files("frames").save_image(torch.rand(3, 8, 8), to="chw.png")  # channels first, floats in [0, 1]
    png = Image.open(io.BytesIO(exp.files("frames/frame.png").read_bytes()))
    assert png.format == "PNG" and np.array_equal(np.asarray(png), pixels)
    jpg = Image.open(io.BytesIO(exp.files("frames/frame.jpg").read_bytes()))
    assert jpg.format == "JPEG" and jpg.size == (16, 16)
    assert Image.open(io.BytesIO(exp.files("frames/chw.png").read_bytes())).size == (8, 8)
    with pytest.raises(InvalidArgument, match="image format"):
        exp.files("frames").save_image(pixels, to="frame.xyz")
    with pytest.raises(InvalidArgument, match="NaN"):
        exp.files("frames").save_image(np.full((4, 4), np.nan), to="nan.png")


def test_torch_state_round_trips_with_weights_only(make_exp):
    exp = make_exp()
    model = torch.nn.Linear(3, 2)
    exp.files("ckpt").save(model, to="model.pt")  # a module is stored as its state_dict
    exp.files("ckpt").save_torch({"step": 3, "w": torch.ones(2)}, to="extra.pt")
    exp.files("arrays").save(np.arange(5), to="a.npy")
    state = exp.files("ckpt/model.pt").load_torch()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert exp.files("ckpt/extra.pt").load_torch()["step"] == 3
    assert exp.files("arrays/a.npy").load_numpy().tolist() == [0, 1, 2, 3, 4]


def test_matplotlib_figure(make_exp):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exp = make_exp()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    exp.files("plots").save(fig, to="curve.png")
    plt.close(fig)
    assert exp.files("plots/curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_download_verifies_and_never_overwrites_unless_asked(make_exp, tmp_path):
    exp = make_exp()
    exp.files("out").save_text("v1", to="a.txt")
    exp.files("out").save_text("b", to="sub/b.txt")
    dest = tmp_path / "dl" / "a.txt"
    assert exp.files("out/a.txt").download(to=dest) == str(dest) and dest.read_text() == "v1"
    dest.write_text("mine")
    with pytest.raises(FileExistsError):
        exp.files("out/a.txt").download(to=dest)
    assert dest.read_text() == "mine"
    exp.files("out/a.txt").download(to=dest, overwrite=True)
    assert dest.read_text() == "v1"
    got = exp.files("out").download("*.txt", to=tmp_path / "all")  # into the folder by name, as ML-Dash
    assert sorted(os.path.relpath(p, tmp_path / "all") for p in got) == ["a.txt", "b.txt"]


def test_delete_removes_only_stored_copies(make_exp, tmp_path):
    exp = make_exp()
    mine = tmp_path / "keep.bin"
    mine.write_bytes(b"precious")
    exp.files("x").save(mine)
    exp.files("x").save_text("t", to="other.txt")
    kept = next(f["id"] for f in exp.files("x").list() if f["filename"] == "keep.bin")
    deleted = exp.files("x/keep.bin").delete()
    assert set(deleted) == {"id", "deletedAt"} and deleted["id"] == kept  # ML-Dash's answer
    assert mine.read_bytes() == b"precious"  # never a user's file
    assert [f["filename"] for f in exp.files("x").list()] == ["other.txt"]
    with pytest.raises(NotFound):
        exp.files("x/keep.bin").read_bytes()
    with pytest.raises(NotFound):
        exp.files("x/keep.bin").delete()


def test_save_copies_at_call_time_and_leaves_temp_sources_alone(make_exp, tmp_path):
    """ML-Dash deletes sources under the temp dir; we copy at call time and never delete a user's file."""
    import tempfile

    exp = make_exp()
    with tempfile.NamedTemporaryFile("wb", suffix=".bin", delete=False) as f:
        f.write(b"in the temp dir")
    try:
        exp.files("t").save(f.name)
        exp.flush()
        assert open(f.name, "rb").read() == b"in the temp dir"
    finally:
        os.remove(f.name)
    rewritten = tmp_path / "rewritten.txt"
    rewritten.write_text("first")
    exp.files("t").save(rewritten)
    rewritten.write_text("second, changed right after the call")
    assert exp.files("t/rewritten.txt").read_text() == "first"
    with pytest.raises(NotFound, match="no file"):
        exp.files("t").save(tmp_path / "missing.txt")


def test_many_uploads_in_parallel_all_land(make_exp):
    exp = make_exp(upload_workers=3)
    for i in range(40):
        exp.files("many").save_blob(bytes([i]) * 100, to=f"f{i:02d}.bin")
    exp.flush()
    listed = exp.files("many").list()
    assert len(listed) == 40
    assert exp.files("many/f07.bin").read_bytes() == bytes([7]) * 100


def test_save_image_without_pillow_names_the_extra(make_exp, monkeypatch):
    import sys

    import numpy as np

    monkeypatch.setitem(sys.modules, "PIL", None)  # as on a plain install: `import PIL` fails
    exp = make_exp()
    with pytest.raises(ImportError, match=r"pip install 'onthefly\[images\]'"):
        exp.files("plots").save_image(np.zeros((4, 4), dtype=np.uint8), to="a.png")


def test_update_right_after_a_buffered_save_and_survives_a_reopen(make_exp):
    exp = make_exp()
    saved = exp.files("w").save_blob(b"abc", to="w.bin", tags=["t"])  # stored in the background
    got = exp.files(file_id=saved["id"], metadata={"epoch": 2}).update()
    assert (got["tags"], got["metadata"], got["sizeBytes"]) == (["t"], {"epoch": 2}, 3)
    with pytest.raises(InvalidArgument):
        exp.files(file_id=saved["id"], tags="not-a-list").update()
    exp.run.complete()
    exp.run.start()
    again = exp.files("w").list()
    assert [(f["id"], f["tags"], f["metadata"]) for f in again] == [(saved["id"], ["t"], {"epoch": 2})]
    assert exp.files("w/w.bin").read_bytes() == b"abc"
