"""daemon/files.py: only bounded regular files are read, only from places the admin controls, and
images are sized from their headers before anything is decoded."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.files import (InputFileError, MediaError, UntrustedFileError, check_admin_controlled,
                          image_size, open_regular_file, read_image, read_regular_file)
from shared_data import DATA

ROOT = Path(__file__).resolve().parent.parent


def _in_subprocess(code: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
    """Run ``code`` in a child with a hard time limit: a read that never ends fails the test."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s)


# --- regular files only ---------------------------------------------------------------------
def test_dev_zero_is_refused_without_reading():
    with pytest.raises(InputFileError, match="not a regular file .a character device"):
        open_regular_file("/dev/zero", 1024)


def test_a_fifo_without_writer_is_refused_at_once(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    # In a child process: before the fix, open() itself blocked forever waiting for a writer.
    result = _in_subprocess(f"from daemon.files import read_regular_file\n"
                            f"try:\n    read_regular_file({str(fifo)!r}, 1024)\n"
                            f"except Exception as exc:\n    print(type(exc).__name__, exc)\n", 30)
    assert result.stdout.startswith("InputFileError"), result.stdout + result.stderr
    assert "a FIFO" in result.stdout


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(InputFileError, match="a directory"):
        read_regular_file(tmp_path, 1024)


def test_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * 2000)
    with pytest.raises(InputFileError, match="2000 bytes; the limit is 1000 bytes"):
        read_regular_file(path, 1000)
    assert read_regular_file(path, 2000) == b"x" * 2000


def test_a_file_that_grows_after_the_check_is_not_read_past_the_limit(tmp_path):
    path = tmp_path / "growing"
    path.write_bytes(b"x" * 100)
    with open_regular_file(path, 100) as file:
        with open(path, "ab") as writer:
            writer.write(b"y" * 10_000)
        with pytest.raises(InputFileError, match="grew past the limit"):
            file.read()


def test_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="cannot open"):
        read_regular_file(tmp_path / "absent", 10)


# --- places the admin controls --------------------------------------------------------------
def _private_file(folder: Path, name: str = "face.jpg") -> Path:
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    path = folder / name
    path.write_bytes(b"sample")
    os.chmod(path, 0o644)
    return path


def test_a_private_file_is_accepted(tmp_path):
    check_admin_controlled(_private_file(tmp_path / "samples"))


def test_a_world_writable_file_is_refused(tmp_path):
    path = _private_file(tmp_path / "samples")
    os.chmod(path, 0o666)
    with pytest.raises(UntrustedFileError, match="file is writable by others .mode 0666"):
        check_admin_controlled(path)


def test_a_group_writable_file_is_refused(tmp_path):
    path = _private_file(tmp_path / "samples")
    os.chmod(path, 0o664)
    with pytest.raises(UntrustedFileError, match="writable by its group"):
        check_admin_controlled(path)


def test_a_file_in_a_world_writable_folder_is_refused(tmp_path):
    path = _private_file(tmp_path / "drop")
    os.chmod(path.parent, 0o777)
    with pytest.raises(UntrustedFileError, match="folder .* is writable by others"):
        check_admin_controlled(path)


def test_a_file_directly_in_a_sticky_tmp_is_refused(tmp_path):
    sticky = tmp_path / "tmp"
    path = _private_file(sticky)
    os.chmod(sticky, 0o1777)
    with pytest.raises(UntrustedFileError, match="mode 1777"):
        check_admin_controlled(path)


def test_a_private_folder_below_a_sticky_tmp_is_accepted(tmp_path):
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    check_admin_controlled(_private_file(sticky / "mine"))


def test_a_symlink_into_an_open_folder_is_judged_by_its_target(tmp_path):
    target = _private_file(tmp_path / "open")
    os.chmod(target.parent, 0o777)
    safe = tmp_path / "safe"
    safe.mkdir()
    (safe / "face.jpg").symlink_to(target)
    with pytest.raises(UntrustedFileError, match=f"via {target.parent}"):
        check_admin_controlled(safe / "face.jpg")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_file_owned_by_another_user_is_refused(tmp_path):
    path = _private_file(tmp_path / "samples")
    os.chown(path, 65534, 65534)
    with pytest.raises(UntrustedFileError, match="belongs to uid 65534"):
        check_admin_controlled(path)
    os.chown(path, 0, 0)
    os.chown(path.parent, 65534, 65534)
    with pytest.raises(UntrustedFileError, match="folder .* belongs to uid 65534"):
        check_admin_controlled(path)


# --- images ---------------------------------------------------------------------------------
def _png_of_zeros(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG, compressed row by row (OpenCV would decode it to BGR)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_a_20000_pixel_square_png_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_of_zeros(20000, 20000))
    assert path.stat().st_size < 2_000_000
    with pytest.raises(MediaError, match="20000x20000 pixels is over the limit of 40 megapixels"):
        read_image(path)


def test_a_jpeg_claiming_a_huge_frame_is_refused(tmp_path):
    ok, encoded = cv2.imencode(".jpg", np.full((32, 48, 3), 90, np.uint8))
    data = bytearray(encoded.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)
    (tmp_path / "huge.jpg").write_bytes(bytes(data))
    with pytest.raises(MediaError, match="30000x30000"):
        read_image(tmp_path / "huge.jpg")


def test_image_size_reads_jpeg_png_and_bmp_headers():
    image = np.zeros((37, 53, 3), np.uint8)
    for ext, kind in ((".jpg", "JPEG"), (".png", "PNG"), (".bmp", "BMP")):
        ok, encoded = cv2.imencode(ext, image)
        assert image_size(encoded.tobytes()) == (kind, 53, 37)


@pytest.mark.parametrize("data, message", [
    (b"GIF89a" + b"\x00" * 20, "GIF images are not supported"),
    (b"II*\x00" + b"\x00" * 20, "TIFF images are not supported"),
    (b"hello world", "not a JPEG, PNG or BMP"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG without its IHDR"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG without a frame header"),
    (b"", "not a JPEG, PNG or BMP"),
])
def test_other_or_broken_images_are_refused_with_a_reason(tmp_path, data, message):
    (tmp_path / "x.img").write_bytes(data)
    with pytest.raises(MediaError, match=message):
        read_image(tmp_path / "x.img")


def test_a_truncated_png_is_a_media_error(tmp_path):
    ok, encoded = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8))
    (tmp_path / "cut.png").write_bytes(encoded.tobytes()[:300])
    with pytest.raises(MediaError, match="cannot decode"):
        read_image(tmp_path / "cut.png")


def test_read_image_decodes_a_real_photo_as_opencv_does():
    photo = next((DATA / "faces" / "lfw").rglob("*.jpg"))
    np.testing.assert_array_equal(read_image(photo), cv2.imread(str(photo), cv2.IMREAD_COLOR))


def test_dev_zero_as_an_image_is_refused():
    with pytest.raises(InputFileError, match="not a regular file"):
        read_image("/dev/zero")
