"""Files: metadata dicts, folders and names, list/exists/read_text/download/delete/duplicate, overwrite,
bindrs. ML-Dash returns full metadata only with buffering off, so it runs unbuffered here (ours returns
it either way: see test_buffered_saves_return_full_metadata_in_ours)."""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import pytest

from tracking.compat.mdcompat import is_ours, start

META_KEYS = {"id", "experimentId", "path", "filename", "description", "tags", "bindrs", "contentType", "sizeBytes",
             "checksum", "metadata", "uploadedAt", "updatedAt", "deletedAt"}
ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


def _where(files):
    return sorted((f["path"], f["filename"]) for f in files)


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src" / "model.txt"
    path.parent.mkdir()
    path.write_text("weights")
    return path


def test_upload_returns_ml_dash_metadata(md, unbuffered, src):
    with start(md).run as exp:
        meta = exp.files("models").upload(str(src), tags=["best"], metadata={"epoch": 3}, description="first")
        plain = exp.files("models").upload(str(src), to="renamed.txt")
    assert set(meta) == META_KEYS
    assert (meta["path"], meta["filename"], meta["sizeBytes"]) == ("/models", "model.txt", 7)
    assert meta["checksum"] == hashlib.sha256(b"weights").hexdigest() and meta["contentType"] == "text/plain"
    assert (meta["tags"], meta["metadata"], meta["description"], meta["bindrs"]) == (["best"], {"epoch": 3}, "first", [])
    assert meta["experimentId"] == "proj/alice/proj/run-1" and meta["deletedAt"] is None
    assert ISO_Z.fullmatch(meta["uploadedAt"]) and ISO_Z.fullmatch(meta["updatedAt"])
    assert (plain["filename"], plain["description"], plain["metadata"], plain["tags"]) == ("renamed.txt", None, None, [])


def test_save_helpers_and_to_folders(md, unbuffered):
    with start(md).run as exp:
        got = [exp.files("cfg").save_json({"a": 1}, to="sub/c.json"),
               exp.files.save_text("t", to="notes/n.txt"),
               exp.files("b").save_blob(b"xx", to="b.bin"),
               exp.files.save_json([1, 2], to="top.json"),
               exp.files.save_blob(b"y", to="deep/er/y.bin"),
               exp.files("b").save(b"zz", to="z.bin"),
               exp.files("j").save({"k": "v"}, to="k.json")]
    assert [(g["path"], g["filename"]) for g in got] == [
        ("/cfg/sub", "c.json"), ("/notes", "n.txt"), ("/b", "b.bin"), ("/", "top.json"), ("/deep/er", "y.bin"),
        ("/b", "z.bin"), ("/j", "k.json")]
    assert [g["contentType"] for g in got[:3]] == ["application/json", "text/plain", "application/octet-stream"]


def test_save_image_png(md, unbuffered):
    with start(md).run as exp:
        meta = exp.files("imgs").save_image(np.zeros((4, 4, 3), dtype=np.uint8), to="a.png")
        assert (meta["path"], meta["filename"], meta["contentType"]) == ("/imgs", "a.png", "image/png")
        assert exp.files("imgs/a.png").exists()


def test_save_image_keeps_the_folder_of_to_in_ours(md, unbuffered):
    """ML-Dash drops the folder part of ``to`` for images, torch, pickles, figures and videos (but not for
    text, JSON and blobs); ours keeps it everywhere: a deliberate difference."""
    with start(md).run as exp:
        meta = exp.files("imgs").save_image(np.zeros((2, 2), dtype=np.uint8), to="sub/a.png")
    assert meta["path"] == ("/imgs/sub" if is_ours(md) else "/imgs")


def test_list_prefix_and_glob(md, unbuffered, src):
    with start(md).run as exp:
        exp.files("models").upload(str(src), to="x.txt")
        exp.files("models2").save_text("m2", to="y.txt")
        exp.files("cfg").save_json({"a": 1}, to="sub/c.json")
        exp.files("imgs").save_blob(b"\x89", to="a.png")
        assert _where(exp.files.list()) == [("/cfg/sub", "c.json"), ("/imgs", "a.png"), ("/models", "x.txt"),
                                            ("/models2", "y.txt")]
        assert _where(exp.files("models").list()) == [("/models", "x.txt"), ("/models2", "y.txt")]  # startswith
        assert _where(exp.files("/models2").list()) == [("/models2", "y.txt")]
        assert _where(exp.files.list("*.txt")) == [("/models", "x.txt"), ("/models2", "y.txt")]
        assert _where(exp.files.list("cfg/*/*.json")) == [("/cfg/sub", "c.json")]
        assert _where(exp.files("cfg").list("c.*")) == [("/cfg/sub", "c.json")]
        assert exp.files("models/x.txt").list() == []
        assert all(set(f) == META_KEYS for f in exp.files.list())


def test_list_by_builder_tags_and_bindrs(md, unbuffered):
    with start(md).run as exp:
        exp.files("a", tags=["keep"], bindrs=["best"]).save_text("1", to="one.txt")
        exp.files("a").save_text("2", to="two.txt")
        assert _where(exp.files("a", tags=["keep"]).list()) == [("/a", "one.txt")]
        assert [f["filename"] for f in exp.bindrs("best").list()] == ["one.txt"]
        assert exp.bindrs("other").list() == []


def test_exists_and_read_text(md, unbuffered, src):
    with start(md).run as exp:
        exp.files("models").upload(str(src), to="x.txt")
        assert exp.files("models/x.txt").exists() and exp.files("/models/x.txt").exists()
        assert exp.files("x.txt").exists()  # by file name
        assert not exp.files("models").exists() and not exp.files("nope.txt").exists()
        assert exp.files("models/x.txt").read_text() == "weights"
        with pytest.raises(ValueError):
            exp.files("missing.txt").read_text()
        with pytest.raises(ValueError):
            exp.files().exists()


def test_same_path_and_name_overwrites(md, unbuffered, src, tmp_path):
    with start(md).run as exp:
        first = exp.files("models").upload(str(src), to="x.txt")
        src.write_text("weights v2")
        second = exp.files("models").upload(str(src), to="x.txt")
        exp.files("models").save_text("other", to="y.txt")
        assert first["id"] != second["id"]
        listed = exp.files("models").list()
        assert _where(listed) == [("/models", "x.txt"), ("/models", "y.txt")]
        assert exp.files("models/x.txt").read_text() == "weights v2"


def test_download_single_and_pattern(md, unbuffered, src, tmp_path):
    with start(md).run as exp:
        exp.files("models").upload(str(src), to="x.txt")
        exp.files("models").save_text("why", to="y.txt")
        exp.files("cfg").save_text("c", to="c.cfg")
        (tmp_path / "out").mkdir()
        one = exp.files("models/x.txt").download(to=str(tmp_path / "out" / "copy.txt"))
        assert one == str(tmp_path / "out" / "copy.txt") and open(one).read() == "weights"
        here = exp.files("models/y.txt").download()
        assert os.path.basename(here) == "y.txt" and open(here).read() == "why"
        many = exp.files("models").download("*.txt", to=str(tmp_path / "all"))
        assert sorted(os.path.basename(p) for p in many) == ["x.txt", "y.txt"]
        assert sorted(os.listdir(tmp_path / "all")) == ["x.txt", "y.txt"]
        via = exp.files.download("cfg/*.cfg", to=str(tmp_path / "cfgs"))
        assert [os.path.basename(p) for p in via] == ["c.cfg"]
        path = exp.files.download("models/x.txt", to=str(tmp_path / "x2.txt"))
        assert path == str(tmp_path / "x2.txt")
        with pytest.raises(ValueError):
            exp.files("models").download("*.none")


def test_download_into_a_folder_works_in_ours(md, unbuffered, src, tmp_path):
    """ML-Dash fails (IsADirectoryError) when ``to`` is an existing folder; ours writes the file into it."""
    (tmp_path / "dir").mkdir()
    with start(md).run as exp:
        exp.files("models").upload(str(src), to="x.txt")
        if is_ours(md):
            assert exp.files("models/x.txt").download(to=str(tmp_path / "dir")) == str(tmp_path / "dir" / "x.txt")
        else:
            with pytest.raises(IsADirectoryError):
                exp.files("models/x.txt").download(to=str(tmp_path / "dir"))


def test_download_never_replaces_a_file_in_ours(md, unbuffered, src, tmp_path):
    """ML-Dash overwrites an existing file silently; ours raises FileExistsError unless overwrite=True."""
    dest = tmp_path / "mine.txt"
    dest.write_text("my own")
    with start(md).run as exp:
        exp.files("models").upload(str(src), to="x.txt")
        if is_ours(md):
            with pytest.raises(FileExistsError):
                exp.files("models/x.txt").download(to=str(dest))
            assert dest.read_text() == "my own"
            exp.files("models/x.txt").download(to=str(dest), overwrite=True)
        else:
            exp.files("models/x.txt").download(to=str(dest))
    assert dest.read_text() == "weights"


def test_delete_single_pattern_and_accessor(md, unbuffered, src):
    with start(md).run as exp:
        a = exp.files("models").upload(str(src), to="x.txt")
        exp.files("imgs").save_blob(b"1", to="a.png")
        exp.files("imgs").save_blob(b"2", to="b.png")
        exp.files("keep").save_text("k", to="k.txt")
        gone = exp.files("models/x.txt").delete()
        assert set(gone) == {"id", "deletedAt"} and gone["id"] == a["id"] and ISO_Z.fullmatch(gone["deletedAt"])
        many = exp.files("imgs").delete("*.png")
        assert isinstance(many, list) and len(many) == 2 and all(set(g) == {"id", "deletedAt"} for g in many)
        assert _where(exp.files.list()) == [("/keep", "k.txt")]
        assert exp.files.delete("keep/k.txt")["id"]
        assert exp.files.list() == []
        with pytest.raises(ValueError):
            exp.files("models/x.txt").delete()
    assert src.read_text() == "weights"  # the source is never touched


def test_duplicate(md, unbuffered, src):
    with start(md).run as exp:
        meta = exp.files("models").upload(str(src), to="x.txt")
        copy = exp.files("models").duplicate(meta, to="latest/best.txt")
        again = exp.files("whatever").duplicate(meta["id"], to="top.txt")
        assert (copy["path"], copy["filename"], copy["checksum"]) == ("/latest", "best.txt", meta["checksum"])
        assert (again["path"], again["filename"]) == ("/", "top.txt")
        assert exp.files("latest/best.txt").read_text() == "weights"
        with pytest.raises(ValueError):
            exp.files("models").duplicate({"no": "id"}, to="x.txt")


def test_buffered_saves_return_full_metadata_in_ours(md, src):
    """With buffering on (the default) ML-Dash returns {"id": "pending", "status": "queued"}; ours copies at
    call time and returns the full metadata: a deliberate difference."""
    with start(md).run as exp:
        meta = exp.files("models").upload(str(src))
    if is_ours(md):
        assert set(meta) == META_KEYS and meta["filename"] == "model.txt"
    else:
        assert meta == {"id": "pending", "status": "queued"}


def test_sources_under_the_temp_folder_are_kept_in_ours(md, tmp_path):
    """ML-Dash deletes an uploaded source that lies under the temp folder (pytest's tmp_path is there);
    ours never deletes a file it did not create: a deliberate difference."""
    mine = tmp_path / "user_file.txt"
    mine.write_text("precious")
    with start(md).run as exp:
        exp.files("in").upload(str(mine))
    assert mine.exists() == is_ours(md)


def test_save_torch_and_pkl(md, unbuffered):
    import torch

    with start(md).run as exp:
        t = exp.files("ckpt").save_torch({"w": torch.ones(2)}, to="model.pt")
        p = exp.files("ckpt").save_pkl({"a": 1}, to="state.pkl")
    assert (t["path"], t["filename"]) == ("/ckpt", "model.pt") and t["sizeBytes"] > 0
    assert (p["path"], p["filename"]) == ("/ckpt", "state.pkl") and p["sizeBytes"] > 0


def test_save_video_gif_with_pillow_and_other_formats_behind_the_extra_in_ours(md, unbuffered):
    """ML-Dash needs its ``video`` extra for any video; ours writes GIFs with Pillow and needs
    ``onthefly[video]`` (imageio) for the rest."""
    if not is_ours(md):
        pytest.skip("ML-Dash's save_video needs imageio, imageio-ffmpeg and scikit-image")
    frames = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    with start(md).run as exp:
        meta = exp.files("vid").save_video(frames, to="clip.gif", fps=5)
        assert (meta["filename"], meta["contentType"]) == ("clip.gif", "image/gif")
        try:
            import imageio  # noqa: F401
        except ImportError:
            with pytest.raises(ValueError, match=r"onthefly\[video\]"):
                exp.files("vid").save_video(frames, to="clip.mp4")


def test_update_sets_description_tags_and_metadata_of_a_stored_file(md, unbuffered):
    with start(md).run as exp:
        saved = exp.files("cfg", description="d0", tags=["a"]).save_text("hi", to="x.txt")
        got = exp.files(file_id=saved["id"], description="d1", tags=["b"], metadata={"k": 1}).update()
        assert set(got) == META_KEYS and got["id"] == saved["id"]
        assert (got["path"], got["filename"], got["sizeBytes"], got["checksum"]) == (
            "/cfg", "x.txt", 2, saved["checksum"])
        assert (got["description"], got["tags"], got["metadata"]) == ("d1", ["b"], {"k": 1})
        assert ISO_Z.fullmatch(got["updatedAt"]) and got["updatedAt"] >= got["uploadedAt"]
        listed = exp.files("cfg").list()
        assert [(f["id"], f["description"], f["tags"], f["metadata"]) for f in listed] == [
            (saved["id"], "d1", ["b"], {"k": 1})]
        assert exp.files("cfg/x.txt").read_text() == "hi"  # the bytes are unchanged
        with pytest.raises(ValueError, match="file_id"):
            exp.files(description="x").update()
        with pytest.raises(FileNotFoundError):
            exp.files(file_id="0000000000abcd-00000000", description="x").update()


def test_update_before_start_raises_runtime_error(md):
    exp = md.Experiment("alice/proj/early", dash_root=".dash")
    with pytest.raises(RuntimeError):
        exp.files(file_id="0000000000abcd-00000000", description="x").update()
