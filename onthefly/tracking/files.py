"""Files: ``exp.files("frames").save_image(pixels, to="frame.jpg", quality=85)``, list, download, delete.

Everything a save needs is captured when it is called: a path is copied (hashing as it copies) into a
staging file the SDK owns, objects are serialized to bytes. The caller may delete or rewrite its source
right after. Storing (local) or uploading (server) the staged copy runs in a thread pool; ``flush()``
waits for it. The SDK never deletes, moves or overwrites a file it did not create: ``download`` refuses
to replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onthefly.tracking import atomic, jsonsafe, names
from onthefly.tracking.errors import FailedPrecondition, InvalidArgument, NotFound
from onthefly.tracking.filestore import CHUNK, STAGING_SUFFIX, guess_type, new_file_id
from onthefly.tracking.records import FileRecord

if TYPE_CHECKING:
    from onthefly.tracking.experiment import Experiment

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                 ".gif": "GIF", ".tif": "TIFF", ".tiff": "TIFF"}


def _ext(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _to_numpy(array: Any):
    import numpy as np

    if hasattr(array, "detach") and hasattr(array, "cpu"):
        array = array.detach().cpu().numpy()
    return np.array(array, copy=True)


def _pillow():
    """PIL.Image, or an ImportError that says how to get it (Pillow is the ``images`` extra)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("saving images and videos needs Pillow: pip install 'onthefly[images]'") from None
    return Image


def encode_image(array: Any, name: str, quality: int = 95) -> bytes:
    """PNG/JPEG/... bytes of an HxW, HxWxC or CxHxW array (uint8, or floats in [0, 1] or [0, 255])."""
    import numpy as np

    Image = _pillow()

    fmt = IMAGE_FORMATS.get(_ext(name))
    if fmt is None:
        raise InvalidArgument(f"cannot tell the image format of {name!r}: end it with one of "
                              f"{', '.join(IMAGE_FORMATS)}")
    if not 1 <= int(quality) <= 100:
        raise InvalidArgument(f"quality must be within 1..100, got {quality}")
    arr = _to_numpy(array)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)  # channels first -> channels last
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)) or arr.size == 0:
        raise InvalidArgument(f"an image must be HxW, HxWx3, HxWx4 (or channels first); got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidArgument("the image holds NaN or infinite values")
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 and arr.min(initial=0.0) >= 0.0 else 1.0
        arr = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise InvalidArgument(f"integer image values must be within 0..255 (got {arr.min()}..{arr.max()}); "
                                  f"scale them to uint8 first")
        arr = arr.astype(np.uint8)
    image = Image.fromarray(arr)
    if fmt == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")
    buf = io.BytesIO()
    kwargs = {"quality": int(quality)} if fmt in ("JPEG", "WEBP") else {}
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def encode_frame(frame: Any):
    """One video frame as an HxWx3 (or HxW) uint8 array, with the same conversions as images."""
    import numpy as np

    Image = _pillow()
    return np.asarray(Image.open(io.BytesIO(encode_image(frame, "f.png"))).convert("RGB"))


def _encode_video(frames: list, target: str, fps: float, kwargs: dict) -> bytes:
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise InvalidArgument(f"saving {target!r} needs imageio and imageio-ffmpeg: pip install onthefly[video] "
                              f"(or name the file '*.gif', which needs only Pillow)") from None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="onthefly-video-") as folder:
        path = os.path.join(folder, "video" + _ext(target))
        imageio.mimwrite(path, frames, fps=fps, **kwargs)
        with open(path, "rb") as f:
            return f.read()


class MissingFile(NotFound, ValueError):
    """No stored file matches (a ValueError, as in ML-Dash, and a NotFound)."""


class UnknownFileId(NotFound, FileNotFoundError):
    """``files(file_id=...).update()`` names no stored file (a FileNotFoundError, as in ML-Dash)."""


def file_meta(exp: "Experiment", record: FileRecord, deleted_at: str | None = None) -> dict[str, Any]:
    """ML-Dash's metadata dict of a stored file: "path" is its folder, "filename" its name."""
    from onthefly.tracking.metrics import iso_z

    at = iso_z(record.created_at)
    return {"id": record.id, "experimentId": f"{exp.project}/{exp.prefix}", "path": record.folder,
            "filename": record.filename, "description": record.description or None, "tags": list(record.tags),
            "bindrs": list(record.bindrs), "contentType": record.content_type, "sizeBytes": record.size,
            "checksum": record.sha256, "metadata": record.metadata or None, "uploadedAt": at,
            "updatedAt": iso_z(record.updated_at) if record.updated_at else at,
            "deletedAt": deleted_at}


def _split_to(to: str) -> tuple[str, str]:
    """ "dir/sub/name" -> ("/dir/sub", "name"); "name" -> ("/", "name")."""
    to = to.lstrip("/")
    folder, _, name = to.rpartition("/")
    return "/" + folder, name


def _split_glob(path: str) -> tuple[str | None, str | None]:
    """ML-Dash's split of "dir/*.png" into the folder before the first glob segment and the pattern."""
    path = path.lstrip("/")
    if "*" not in path and "?" not in path:
        return path, None
    parts = path.split("/")
    first = next(i for i, p in enumerate(parts) if "*" in p or "?" in p)
    return ("/".join(parts[:first]) or None), "/".join(parts[first:])


class FilesAccessor:
    """``exp.files``: ``exp.files("dir")`` returns a :class:`FileBuilder`; ``upload``, ``save_text``,
    ``save_json``, ``save_blob`` (``to="dir/name"``), ``download``, ``delete`` (a path or a glob) and
    ``list`` work on the experiment's root; other builder methods too."""

    def __init__(self, exp: "Experiment") -> None:
        self._exp = exp

    def __call__(self, dir: str | None = None, **kwargs) -> "FileBuilder":  # noqa: A002 - ML-Dash's name
        return FileBuilder(self._exp, dir if dir is not None else kwargs.pop("prefix", None), **kwargs)

    def download(self, path: str, *, to: str | os.PathLike | None = None, overwrite: bool = False):
        """One file by path (returns where it was written) or every match of a glob (returns a list)."""
        folder, pattern = _split_glob(path)
        if pattern is None:
            return FileBuilder(self._exp, folder).download(to=to, overwrite=overwrite)
        return FileBuilder(self._exp, folder).download(pattern, to=to, overwrite=overwrite)

    def delete(self, path: str) -> dict | list[dict]:
        """Delete one stored file by path, or every match of a glob."""
        folder, pattern = _split_glob(path)
        if pattern is None:
            return FileBuilder(self._exp, folder).delete()
        return FileBuilder(self._exp, folder).delete(pattern)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(FileBuilder(self._exp, None), name)


class BindrsBuilder:
    """``exp.bindrs(name)``: the files bound to one collection (``files(..., bindrs=[name])``)."""

    def __init__(self, exp: "Experiment", name: str) -> None:
        self._exp, self._name = exp, name

    def list(self) -> list[dict]:
        return [file_meta(self._exp, r) for r in _current(self._exp) if self._name in r.bindrs]


def _current(exp: "Experiment") -> list[FileRecord]:
    """The stored files, oldest first, one per logical path (the newest: a save replaces the file at its
    path, as in ML-Dash; see Experiment._store_file)."""
    exp._require_started("files")
    exp._flush_uploads()
    latest: dict[str, FileRecord] = {}
    for r in exp._backend_for_read().list_files(exp.prefix):
        old = latest.get(r.path)
        if old is None or r.id > old.id:
            latest[r.path] = r
    return sorted(latest.values(), key=lambda r: r.id)


class FileBuilder:
    """File operations under one logical folder, or on one file (``exp.files("models/best.pt")``).

    Saves return ML-Dash's metadata dict ({"id", "path" (the folder), "filename", "sizeBytes", "checksum",
    "contentType", "tags", "bindrs", "metadata", "uploadedAt", ...}) at once, buffered or not: the content
    is copied when the call is made and stored in the background."""

    def __init__(self, exp: "Experiment", path: str | None = None, description: str | None = None,
                 tags: list[str] | None = None, metadata: dict | None = None, bindrs: list[str] | None = None,
                 file_id: str | None = None, prefix: str | None = None, file_path: str | None = None,
                 dest_path: str | None = None) -> None:
        self._exp = exp
        path = path if path is not None else (prefix if prefix not in (None, "/") else None)
        self._path = names.normalize_file_path(path) if path and path.strip("/") else ""
        self._description, self._tags, self._metadata = description, tags, metadata
        self._bindrs = list(bindrs or [])
        self._file_id, self._file_path, self._dest_path = file_id, file_path, dest_path

    # saving --------------------------------------------------------------------------------------------
    def _target(self, to: str | None, default_name: str | None = None) -> str:
        if to:
            return names.join_file_path(self._path, to)
        if default_name:
            return names.join_file_path(self._path, default_name)
        if self._path:
            return self._path
        raise InvalidArgument("say where to store it: pass to='name.ext' (or use exp.files('dir/name.ext'))")

    def _submit(self, logical: str, staged: Path, digest: str, size: int, description, tags, metadata) -> dict:
        meta = jsonsafe.plain(metadata if metadata is not None else (self._metadata or {}), "file metadata")
        record = FileRecord(id=staged.name[:-len(STAGING_SUFFIX)], path=logical, size=size, sha256=digest,
                            content_type=guess_type(logical),
                            description=description if description is not None else (self._description or ""),
                            tags=list(tags if tags is not None else (self._tags or [])), metadata=meta,
                            bindrs=list(self._bindrs))
        self._exp._submit_upload(record, staged)
        return file_meta(self._exp, record)

    def _stage_bytes(self, data: bytes) -> tuple[Path, str, int]:
        self._exp._require_running("files.save()")
        staged = self._exp._staging_dir() / f"{new_file_id()}{STAGING_SUFFIX}"
        atomic.write_bytes(staged, bytes(data), durable=False)
        return staged, hashlib.sha256(data).hexdigest(), len(data)

    def _stage_path(self, source: Path) -> tuple[Path, str, int]:
        self._exp._require_running("files.save()")
        if not source.is_file():
            raise MissingFile(f"no file {str(source)!r} to save (pass bytes with save_blob, text with save_text)")
        staged = self._exp._staging_dir() / f"{new_file_id()}{STAGING_SUFFIX}"
        digest, size = hashlib.sha256(), 0
        with open(source, "rb") as src, open(staged, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        return staged, digest.hexdigest(), size

    def upload(self, fpath: str | os.PathLike, *, to: str | None = None, description: str | None = None,
               tags: list[str] | None = None, metadata: dict | None = None) -> dict:
        """Store a copy of the file at ``fpath`` (the original is never touched), named ``to`` or as it is."""
        source = Path(fpath)
        staged, digest, size = self._stage_path(source)
        return self._submit(self._target(to, source.name), staged, digest, size, description, tags, metadata)

    def save(self, content: Any = None, *, to: str | None = None, description: str | None = None,
             tags: list[str] | None = None, metadata: dict | None = None, **kwargs) -> dict:
        """Store ``content`` by its type: a path (file copied), bytes, dict/list (JSON), numpy array or tensor
        (image for image extensions, else .npy / torch), a torch module or state dict, a matplotlib figure."""
        extra = dict(description=description, tags=tags, metadata=metadata)
        if content is None and self._file_path:
            content = self._file_path
        if isinstance(content, (str, os.PathLike)):  # a path, as in ML-Dash (text goes through save_text)
            return self.upload(content, to=to, **extra)
        if isinstance(content, (bytes, bytearray, memoryview)):
            return self.save_blob(bytes(content), to=to, **extra)
        if hasattr(content, "savefig"):
            return self.save_fig(content, to=to, **extra, **kwargs)
        if _is_torch(content) and not (to and _ext(to) in IMAGE_FORMATS):
            return self.save_torch(content, to=to, **extra)
        if hasattr(content, "shape") and hasattr(content, "dtype"):
            if to and _ext(to) in IMAGE_FORMATS:
                return self.save_image(content, to=to, quality=kwargs.get("quality", 95), **extra)
            return self.save_numpy(content, to=to, **extra)
        if isinstance(content, (dict, list, tuple)):
            return self.save_json(content, to=to, **extra)
        raise InvalidArgument(f"cannot save a {type(content).__name__}: pass a path, bytes, text, JSON data, "
                              f"an array, a torch object or a figure (or use save_pkl)")

    def save_blob(self, data: bytes, *, to: str | None = None, **extra) -> dict:
        """Store raw bytes."""
        target = self._target(to)
        return self._submit(target, *self._stage_bytes(data), **_extra(extra))

    save_bytes = save_blob

    def save_text(self, content: str, *, to: str | None = None, **extra) -> dict:
        """Store text as UTF-8."""
        target = self._target(to)
        return self._submit(target, *self._stage_bytes(str(content).encode("utf-8")), **_extra(extra))

    def save_json(self, content: Any, *, to: str | None = None, **extra) -> dict:
        """Store standard JSON (non-finite numbers as {"$float": "NaN"})."""
        target = self._target(to)
        try:
            text = jsonsafe.dumps(content, "content", indent=2)
        except TypeError as exc:
            raise InvalidArgument(str(exc)) from None
        return self._submit(target, *self._stage_bytes(text.encode("utf-8")), **_extra(extra))

    def save_image(self, array: Any, *, to: str | None = None, quality: int = 95, **extra) -> dict:
        """Store an array as an image; the format follows the extension (.png lossless, .jpg with quality)."""
        target = self._target(to)
        return self._submit(target, *self._stage_bytes(encode_image(array, target, quality)), **_extra(extra))

    def save_numpy(self, array: Any, *, to: str | None = None, **extra) -> dict:
        """Store an array as .npy (read back with ``load_numpy``; never pickled)."""
        import numpy as np

        target = self._target(to)
        buf = io.BytesIO()
        arr = _to_numpy(array)
        if arr.dtype == object:
            raise InvalidArgument("object arrays cannot be stored without pickling; convert to a numeric dtype")
        np.save(buf, arr, allow_pickle=False)
        return self._submit(target, *self._stage_bytes(buf.getvalue()), **_extra(extra))

    def save_torch(self, obj: Any, *, to: str | None = None, **extra) -> dict:
        """Store a torch object (a module is stored as its state_dict); read back with ``load_torch``,
        which loads with ``weights_only=True``."""
        import torch

        target = self._target(to)
        if isinstance(obj, torch.nn.Module):
            obj = obj.state_dict()
        buf = io.BytesIO()
        torch.save(obj, buf)
        return self._submit(target, *self._stage_bytes(buf.getvalue()), **_extra(extra))

    def save_fig(self, fig: Any = None, *, to: str | None = None, **kwargs) -> dict:
        """Store a matplotlib figure (default: the current one) in the format of the extension."""
        extra = {k: kwargs.pop(k) for k in ("description", "tags", "metadata") if k in kwargs}
        target = self._target(to)
        if fig is None:
            try:
                import matplotlib.pyplot as plt
            except ImportError:
                raise InvalidArgument("matplotlib is not installed: pass a figure object or install matplotlib") \
                    from None
            fig = plt.gcf()
        buf = io.BytesIO()
        fig.savefig(buf, format=_ext(target).lstrip(".") or "png", **kwargs)
        return self._submit(target, *self._stage_bytes(buf.getvalue()), **_extra(extra))

    def save_pkl(self, content: Any, *, to: str | None = None, **extra) -> dict:
        """Store a pickle (the SDK never unpickles anything; load it yourself only if you trust it)."""
        target = self._target(to)
        return self._submit(target, *self._stage_bytes(pickle.dumps(content)), **_extra(extra))

    def save_video(self, frames: Any, *, to: str | None = None, fps: float = 20.0, **kwargs) -> dict:
        """Store a stack of frames (N x H x W [x C]) as a video: ".gif" with Pillow; other formats (.mp4,
        ...) with imageio and imageio-ffmpeg (``pip install onthefly[video]``), ``kwargs`` passed on."""
        extra = {k: kwargs.pop(k) for k in ("description", "tags", "metadata") if k in kwargs}
        target = self._target(to)
        frames = [encode_frame(frame) for frame in frames]
        if not frames:
            raise InvalidArgument("save_video needs at least one frame")
        if _ext(target) == ".gif":
            Image = _pillow()
            images = [Image.fromarray(f) for f in frames]
            buf = io.BytesIO()
            images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                           duration=int(1000 / fps), loop=0)
            data = buf.getvalue()
        else:
            data = _encode_video(frames, target, fps, kwargs)
        return self._submit(target, *self._stage_bytes(data), **_extra(extra))

    # finding -------------------------------------------------------------------------------------------
    def _find(self) -> FileRecord | None:
        """The file this builder names: by ``file_id``, else by its path from the root or by file name."""
        records = _current(self._exp)
        if self._file_id is not None:
            return next((r for r in records if r.id == self._file_id), None)
        if not self._path:
            raise InvalidArgument("no file named: use exp.files('dir/name.ext') or files(file_id=...)")
        exact = [r for r in records if r.path == self._path]
        if exact:
            return exact[-1]
        name = self._path.lstrip("/")
        return next((r for r in records if r.filename == name), None)

    def _found(self) -> FileRecord:
        record = self._find()
        if record is None:
            raise MissingFile(f"file not found: {self._file_id or self._path!r} (exp.files().list() shows what "
                              f"is stored)")
        return record

    def list(self, pattern: str | None = None) -> list[dict]:
        """The stored files whose folder starts with this builder's path (all files for ``files()``),
        matching ``pattern`` (a glob on the file name or on its path from the root) and the builder's tags."""
        records = _current(self._exp)
        if self._path:
            records = [r for r in records if r.folder.startswith(self._path)]
        if self._tags:
            wanted = set(self._tags)
            records = [r for r in records if wanted.intersection(r.tags)]
        if pattern:
            pattern = pattern.lstrip("/")
            records = [r for r in records
                       if fnmatch.fnmatch(r.filename, pattern) or fnmatch.fnmatch(r.path.lstrip("/"), pattern)]
        return [file_meta(self._exp, r) for r in records]

    def exists(self) -> bool:
        """Whether a file is stored at this path (or with this name)."""
        return self._find() is not None

    def read_bytes(self) -> bytes:
        record = self._found()
        buf = io.BytesIO()
        self._exp._backend_for_read().read_file(self._exp.prefix, record.id, buf)
        data = buf.getvalue()
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise RuntimeError(f"stored file {record.path} does not match its checksum")
        return data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def read_json(self) -> Any:
        return jsonsafe.loads(self.read_bytes())

    def load_torch(self, map_location: Any = "cpu") -> Any:
        """Load a stored torch file with ``weights_only=True`` (tensors and plain containers only)."""
        import torch

        return torch.load(io.BytesIO(self.read_bytes()), map_location=map_location, weights_only=True)

    def load_numpy(self) -> Any:
        import numpy as np

        return np.load(io.BytesIO(self.read_bytes()), allow_pickle=False)

    def download(self, pattern: str | None = None, *, to: str | os.PathLike | None = None,
                 overwrite: bool = False) -> str | list[str]:
        """Copy the named file to ``to`` (a file path or an existing folder; default: its name in the
        current folder), or, with a pattern, every match into the folder ``to`` by file name. Checksums
        are verified; an existing file is never replaced unless ``overwrite=True``."""
        to = to if to is not None else self._dest_path
        if pattern:
            found = self.list(pattern)
            if not found:
                raise MissingFile(f"no files under {self._path or '/'!r} match {pattern!r}")
            folder = Path(to) if to is not None else Path(".")
            ids = {f["id"] for f in found}
            records = [r for r in _current(self._exp) if r.id in ids]
            return [str(self._download_one(r, folder / r.filename, overwrite)) for r in records]
        record = self._found()
        dest = Path(to) if to is not None else Path(record.filename)
        if dest.is_dir():
            dest = dest / record.filename
        return str(self._download_one(record, dest, overwrite))

    def _download_one(self, record: FileRecord, dest: Path, overwrite: bool) -> Path:
        if dest.exists() and not overwrite:
            raise FileExistsError(f"{dest} exists; pass overwrite=True to replace it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_writer(dest, durable=False) as f:
            hasher = _HashingWriter(f)
            self._exp._backend_for_read().read_file(self._exp.prefix, record.id, hasher)
            if hasher.hexdigest() != record.sha256:
                raise RuntimeError(f"download of {record.path} does not match its checksum; nothing was written")
        return dest

    def delete(self, pattern: str | None = None) -> dict | list[dict]:
        """Delete the named stored file ({"id", "deletedAt"}), or every match of a pattern (a list). Only
        the experiment's stored copies are removed; files on your disk are never touched."""
        from onthefly.tracking.metrics import iso_z

        self._exp._require_running("files.delete()")
        if pattern:
            found = self.list(pattern)
            if not found:
                raise MissingFile(f"no stored file under {self._path or '/'!r} matches {pattern!r}")
            ids = [f["id"] for f in found]
        else:
            ids = [self._found().id]
        backend, prefix = self._exp._backend, self._exp.prefix
        stored = backend.list_files(prefix)
        paths = {r.path for r in stored if r.id in ids}
        for r in stored:
            if r.path in paths:  # any older copy at the same path goes too
                try:
                    backend.delete_file(prefix, r.id)
                except NotFound:
                    pass
        at = iso_z(time.time())
        out = [{"id": file_id, "deletedAt": at} for file_id in ids]
        return out if pattern else out[0]

    def update(self) -> dict:
        """Set the description, tags and metadata given to ``exp.files(file_id=..., ...)`` on that stored
        file (those not given are kept; its bytes are unchanged) and return its metadata dict."""
        self._exp._require_running("files.update()")
        if not self._file_id:
            raise ValueError("files().update() needs file_id: exp.files(file_id=ID, description=..., tags=..., "
                             "metadata=...).update()")
        self._exp._flush_uploads()
        backend = self._exp._backend
        if not hasattr(backend, "update_file"):
            raise FailedPrecondition("files().update() works on a local store; a dash_url server does not "
                                     "provide it (save the file again with the new description/tags instead)")
        if not any(r.id == self._file_id for r in backend.list_files(self._exp.prefix)):
            raise UnknownFileId(f"file {self._file_id!r} not found (exp.files().list() shows the stored ids)")
        record = backend.update_file(self._exp.prefix, self._file_id, self._description, self._tags,
                                     self._metadata)
        return file_meta(self._exp, record)

    def duplicate(self, source: str | dict, to: str) -> dict:
        """Store a copy of a stored file (its id, or its metadata dict) at ``to`` ("dir/name", from the
        experiment's root)."""
        source_id = source.get("id") if isinstance(source, dict) else source
        if not isinstance(source_id, str) or not source_id:
            raise InvalidArgument("source must be a file id or a metadata dict with an 'id'")
        _, name = _split_to(to)
        if not name:
            raise InvalidArgument(f"invalid target {to!r}: it must end with a file name")
        data = FileBuilder(self._exp, file_id=source_id).read_bytes()
        builder = FileBuilder(self._exp, None, description=self._description, tags=self._tags,
                              metadata=self._metadata, bindrs=self._bindrs)
        return builder._submit(names.normalize_file_path(to), *builder._stage_bytes(data), None, None, None)


class _HashingWriter:
    def __init__(self, f) -> None:
        self._f = f
        self._h = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._h.update(data)
        return self._f.write(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _extra(extra: dict) -> dict:
    return {"description": extra.get("description"), "tags": extra.get("tags"), "metadata": extra.get("metadata")}


def _is_torch(obj: Any) -> bool:
    module = type(obj).__module__
    if module.startswith("torch"):
        return True
    if isinstance(obj, dict) and obj and all(type(v).__module__.startswith("torch") for v in obj.values()):
        return True
    return False


def remove_staging(path: Path) -> None:
    """Remove one of the SDK's own staging copies (never anything else)."""
    if not str(path).endswith(STAGING_SUFFIX):
        raise RuntimeError(f"refusing to remove {path}: not a staging copy the tracking SDK made")
    Path(path).unlink(missing_ok=True)

