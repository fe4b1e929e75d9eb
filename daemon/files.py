"""Opening input files safely: regular files only, bounded in size, from places the admin controls.

Every reader of an outside file (the config, enrolment and verify media, later the device key) goes
through :func:`open_regular_file`, so that ``/dev/zero``, a FIFO or a directory is refused before a
single byte is read, and no read can return more than the caller's limit. :func:`check_admin_controlled`
adds what enrolment needs: a sample must come from a file that nobody but its owner (root or the
user running avid) could have written or swapped.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from pathlib import Path

import numpy as np

from daemon.errors import AvidError

#: The largest image file :func:`read_image` opens (a 12 MP phone JPEG is 3-8 MB).
MAX_IMAGE_BYTES = 50 * 1024 * 1024
#: The most pixels :func:`read_image` decodes: 40 MP, 120 MB as 8-bit BGR.
MAX_IMAGE_PIXELS = 40_000_000

# OpenCV's own ceiling (read once, at its first decode; default 2^30 pixels, 3 GB): a second line of
# defence should OpenCV ever read a size from a header differently than image_size() does.
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_IMAGE_PIXELS)


class InputFileError(AvidError, OSError):
    """An input file is not a regular file, is too large, or cannot be opened."""


class UntrustedFileError(InputFileError, PermissionError):
    """An input file, or a folder above it, can be written by someone other than its owner."""


class MediaError(AvidError, ValueError):
    """An image or audio file is malformed, in an unsupported format or over a size limit."""


def open_regular_file(path: str | os.PathLike, max_bytes: int) -> io.BufferedReader:
    """Open ``path`` for binary reading if it is a regular file of at most ``max_bytes``.

    The file is opened without blocking (a FIFO with no writer would otherwise hang the ``open``)
    and checked with ``fstat`` on the opened descriptor, so the answer is about the file actually
    read, not whatever the name pointed to a moment before. The returned reader never gives more
    than ``max_bytes`` in total, even if the file grows after the check.

    :param path: the file to open (symbolic links are followed).
    :param max_bytes: the largest size accepted.
    :raises InputFileError: the file is missing, unreadable, not a regular file or too large.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputFileError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(f"{path} is not a regular file ({_kind(info.st_mode)}); refused")
        if info.st_size > max_bytes:
            raise InputFileError(f"{path} is {info.st_size} bytes; the limit is {max_bytes} bytes")
        os.set_blocking(fd, True)
        raw = io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    return io.BufferedReader(_Bounded(raw, max_bytes, path))


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The whole content of a regular file of at most ``max_bytes`` (see :func:`open_regular_file`)."""
    with open_regular_file(path, max_bytes) as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputFileError(f"{path} grew past the limit of {max_bytes} bytes while being read")
    return data


class _Bounded(io.RawIOBase):
    """A raw reader that stops (raising) once more than ``limit`` bytes have been read."""

    def __init__(self, raw: io.FileIO, limit: int, path: Path):
        super().__init__()
        self._raw, self._limit, self._path = raw, limit, path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer) -> int:
        remaining = self._limit - self._raw.tell()
        if remaining <= 0:
            # Past the limit only when the file grew after it was checked; say so instead of
            # silently truncating.
            extra = self._raw.read(1)
            if extra:
                raise InputFileError(f"{self._path} grew past the limit of {self._limit} bytes")
            return 0
        view = memoryview(buffer)[:remaining]
        return self._raw.readinto(view)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def check_admin_controlled(path: str | os.PathLike) -> None:
    """Refuse a file that someone other than the admin could have written or replaced.

    The file (after following symbolic links) and every folder above it must be owned by root or
    by the user running avid. The file and the folder holding it must not be writable by group or
    others; a sticky folder (``/tmp``) does not count as safe for the file itself, because anyone
    may have created the file there. Folders further up may be sticky and world-writable, as
    ``/tmp`` is: the sticky bit stops others renaming a folder they do not own.

    :raises UntrustedFileError: naming the file or folder and why.
    :raises InputFileError: the file does not exist.
    """
    path = Path(path)
    try:
        real = Path(os.path.realpath(path, strict=True))
        info = os.stat(real)
    except (OSError, RuntimeError) as exc:
        raise InputFileError(f"cannot open {path}: {getattr(exc, 'strerror', None) or exc}") from None
    trusted = {0, os.geteuid()}
    _check_owner_and_mode(path, real, info, trusted, sticky_ok=False, what="file")
    parent = real.parent
    _check_owner_and_mode(path, parent, os.stat(parent), trusted, sticky_ok=False, what="folder")
    for folder in parent.parents:
        _check_owner_and_mode(path, folder, os.stat(folder), trusted, sticky_ok=True, what="folder")


def _check_owner_and_mode(asked: Path, checked: Path, info: os.stat_result, trusted: set[int],
                          sticky_ok: bool, what: str) -> None:
    where = "" if checked == asked else f" (via {checked})"
    if info.st_uid not in trusted:
        raise UntrustedFileError(f"{asked}: the {what}{where} belongs to uid {info.st_uid}, not to root "
                                 "or the user running avid; copy the file to a folder you control")
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (sticky_ok and info.st_mode & stat.S_ISVTX):
        who = "others" if info.st_mode & stat.S_IWOTH else "its group"
        raise UntrustedFileError(f"{asked}: the {what}{where} is writable by {who} "
                                 f"(mode {stat.S_IMODE(info.st_mode):04o}); copy the file to a "
                                 "folder only you can write")


# --- images -------------------------------------------------------------------------------------
def image_size(header: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the first bytes of a JPEG, PNG or BMP file.

    :raises MediaError: another format, or a header that does not say the size.
    """
    if header.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(header) < 24 or header[12:16] != b"IHDR":
            raise MediaError("PNG without its IHDR header")
        width, height = struct.unpack(">II", header[16:24])
        return "PNG", width, height
    if header.startswith(b"\xff\xd8"):
        return ("JPEG",) + _jpeg_size(header)
    if header.startswith(b"BM") and len(header) >= 26:
        header_size = struct.unpack("<I", header[14:18])[0]
        if header_size == 12:
            width, height = struct.unpack("<HH", header[18:22])
        else:
            width, height = struct.unpack("<ii", header[18:26])
        return "BMP", abs(width), abs(height)
    for magic, name in ((b"GIF8", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
                        (b"RIFF", "WebP or other RIFF"), (b"\x00\x00\x00\x0cjP", "JPEG 2000")):
        if header.startswith(magic):
            raise MediaError(f"{name} images are not supported (use JPEG, PNG or BMP)")
    raise MediaError("not a JPEG, PNG or BMP image")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise MediaError("JPEG with a corrupt marker sequence")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        if marker in (0xD9, 0xDA) or length < 2:
            break
        pos += 2 + length
    raise MediaError("JPEG without a frame header (SOF) in its first bytes")


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS,
               max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """Decode a JPEG, PNG or BMP file as an 8-bit BGR array, checking its size before decoding.

    The width and height are read from the file's header; an image of more than ``max_pixels`` is
    refused before OpenCV allocates anything for it.

    :raises InputFileError: not a regular file, or larger than ``max_bytes``.
    :raises MediaError: another format, a corrupt file, or too many pixels (the message says the limit).
    """
    import cv2

    data = read_regular_file(path, max_bytes)
    try:
        kind, width, height = image_size(data[:256 * 1024])
    except struct.error:
        raise MediaError(f"{path}: truncated image header") from None
    except MediaError as exc:
        raise MediaError(f"{path}: {exc}") from None
    if width == 0 or height == 0:
        raise MediaError(f"{path}: {kind} image of {width}x{height} pixels")
    if width * height > max_pixels:
        raise MediaError(f"{path}: {kind} image of {width}x{height} pixels is over the limit of "
                         f"{max_pixels / 1e6:g} megapixels; scale it down first")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise MediaError(f"{path}: cannot decode this {kind} file ({exc.err or exc})") from None
    if image is None:
        raise MediaError(f"{path}: cannot decode this {kind} file (corrupt or truncated)")
    if sorted(image.shape[:2]) != sorted((width, height)):
        raise MediaError(f"{path}: {kind} header says {width}x{height}, the image is "
                         f"{image.shape[1]}x{image.shape[0]}")
    return image
