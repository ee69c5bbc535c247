"""backend.imageio: channel layouts, 16-bit, EXIF orientation, ICC/EXIF carry-over, limits,
specific errors and atomic writes, on real files."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from backend import imageio
from backend.imageio import decode_image_bytes, read_image, write_image
from stclient.errors import (BAD_IMAGE, BAD_REQUEST, TOO_LARGE, UNREADABLE, WRITE_FAILED,
                             StyleTransferError)

RNG = np.random.default_rng(1234)


def random_pixels(h: int, w: int, c: int, dtype=np.uint8) -> np.ndarray:
    top = 65535 if dtype == np.uint16 else 255
    return RNG.integers(0, top + 1, size=(h, w, c)).astype(dtype)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_keeps_channels_and_depth(tmp_path, channels, dtype):
    pixels = random_pixels(13, 17, channels, dtype)
    path = write_image(tmp_path / "x.png", pixels)
    loaded = read_image(path)
    assert loaded.pixels.dtype == dtype
    assert loaded.pixels.shape == (13, 17, channels)
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert loaded.format == "PNG"


def test_16bit_png_is_readable_by_pillow(tmp_path):
    pixels = random_pixels(9, 11, 3, np.uint16)
    path = write_image(tmp_path / "x.png", pixels)
    with Image.open(path) as image:  # Pillow reads it (as 8-bit): the file is a valid PNG
        reduced = np.asarray(image.convert("RGB"))
    assert np.abs(reduced.astype(int) - (pixels >> 8).astype(int)).max() <= 1


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_round_trip(tmp_path, channels, dtype):
    if dtype == np.float32:
        pixels = RNG.random((10, 12, channels)).astype(np.float32)
    else:
        pixels = random_pixels(10, 12, channels, dtype)
    loaded = read_image(write_image(tmp_path / "x.tif", pixels))
    if dtype == np.float32 and channels == 1:
        assert loaded.pixels.dtype == np.float32
    assert loaded.pixels.shape == pixels.shape
    assert loaded.pixels.dtype == pixels.dtype
    np.testing.assert_array_equal(loaded.pixels, pixels)


def test_jpeg_drops_alpha_by_compositing_over_white(tmp_path):
    pixels = np.zeros((16, 16, 4), np.uint8)
    pixels[:, :8] = (200, 10, 10, 255)   # opaque red left half
    pixels[:, 8:] = (0, 0, 0, 0)         # fully transparent black right half
    loaded = read_image(write_image(tmp_path / "x.jpg", pixels, quality=95))
    assert loaded.pixels.shape == (16, 16, 3)
    assert loaded.pixels[:, 12:].min() >= 245          # transparent -> white, not black
    assert abs(int(loaded.pixels[8, 3, 0]) - 200) <= 6 and loaded.pixels[8, 3, 1] < 30


def test_16bit_to_jpeg_rounds_to_8_bits(tmp_path):
    value = 257 * 100 + 129                  # 100.5 in 8-bit units -> rounds to 101 (not 100)
    pixels = np.full((16, 16, 3), value, np.uint16)
    loaded = read_image(write_image(tmp_path / "x.jpg", pixels, quality=100))
    assert loaded.pixels.dtype == np.uint8
    assert abs(int(loaded.pixels.mean().round()) - 101) <= 1
    np.testing.assert_array_equal(imageio.to_uint8(np.array([[[value]]], np.uint16)), [[[101]]])


def test_float_pixels_round_to_nearest():
    floats = np.array([[[0.0, 0.4 / 255, 0.6 / 255, 1.49 / 255, 1.51 / 255, 1.0, 1.2, -0.1]]],
                      np.float32)
    np.testing.assert_array_equal(imageio.to_uint8(floats), [[[0, 0, 1, 1, 2, 255, 255, 0]]])
    np.testing.assert_array_equal(imageio.to_uint16(floats[..., :3]), [[[0, 103, 154]]])


def test_webp_lossless_round_trip_with_alpha(tmp_path):
    pixels = random_pixels(12, 14, 4)
    loaded = read_image(write_image(tmp_path / "x.webp", pixels, quality=100))
    np.testing.assert_array_equal(loaded.pixels, pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = random_pixels(6, 10, 3)
    exif = Image.Exif()
    exif[imageio.EXIF_ORIENTATION] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image))  # Pillow's own reading
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.pixels, expected)
    assert loaded.orientation == orientation
    carried = Image.Exif()
    carried.load(loaded.exif)
    assert carried[imageio.EXIF_ORIENTATION] == 1


def test_exif_and_icc_are_carried_with_orientation_reset(tmp_path):
    icc = srgb_icc()
    exif = Image.Exif()
    exif[imageio.EXIF_ORIENTATION] = 6
    exif[0x010F] = "TestCam"
    stored = random_pixels(8, 12, 3)
    src = tmp_path / "in.jpg"
    Image.fromarray(stored).save(src, exif=exif.tobytes(), icc_profile=icc, quality=95)
    loaded = read_image(src)
    assert loaded.pixels.shape == (12, 8, 3)       # rotated upright
    assert loaded.icc_profile == icc
    for name, pixels in (("out.jpg", loaded.pixels), ("out.png", loaded.pixels),
                         ("out16.png", imageio.to_uint16(loaded.pixels)),
                         ("out.webp", loaded.pixels)):
        out = write_image(tmp_path / name, pixels, icc_profile=loaded.icc_profile,
                          exif=loaded.exif)
        again = read_image(out)
        assert again.pixels.shape == (12, 8, 3), name  # not rotated a second time
        assert again.icc_profile == icc, name
        written = Image.Exif()
        written.load(again.exif)
        assert written[0x010F] == "TestCam", name
        assert written.get(imageio.EXIF_ORIENTATION, 1) == 1, name


def test_rgb_profile_is_not_written_into_grey_file(tmp_path):
    out = write_image(tmp_path / "g.png", random_pixels(5, 5, 1), icc_profile=srgb_icc())
    assert read_image(out).icc_profile is None


def test_palette_images_become_rgb_or_rgba(tmp_path):
    base = Image.fromarray(random_pixels(8, 8, 3)).convert("P", palette=Image.Palette.ADAPTIVE)
    base.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").pixels.shape == (8, 8, 3)
    base.info["transparency"] = 0
    base.save(tmp_path / "pt.png", transparency=0)
    loaded = read_image(tmp_path / "pt.png")
    assert loaded.pixels.shape == (8, 8, 4) and loaded.mode_info == "P"
    assert set(np.unique(loaded.pixels[:, :, 3])) <= {0, 255}


def test_bilevel_and_cmyk(tmp_path):
    Image.fromarray(random_pixels(8, 8, 1)[:, :, 0] > 127).save(tmp_path / "b.png")
    bilevel = read_image(tmp_path / "b.png")
    assert bilevel.pixels.shape == (8, 8, 1) and set(np.unique(bilevel.pixels)) <= {0, 255}
    Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    cmyk = read_image(tmp_path / "c.jpg")
    assert cmyk.pixels.shape == (4, 6, 3)
    red = cmyk.pixels.reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    loaded = read_image(tmp_path / "a.gif")
    assert loaded.pixels[..., 0].min() > 200 and loaded.pixels[..., 2].max() < 50


# ---------------------------------------------------------------- errors

def expect_error(code: str, fragment: str, fn, *args, **kwargs) -> StyleTransferError:
    with pytest.raises(StyleTransferError) as caught:
        fn(*args, **kwargs)
    assert caught.value.code == code
    assert fragment.lower() in caught.value.message.lower(), caught.value.message
    return caught.value


def test_unreadable_inputs_get_specific_errors(tmp_path):
    expect_error(BAD_IMAGE, "not found", read_image, tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    expect_error(BAD_IMAGE, "empty", read_image, tmp_path / "empty.png")
    (tmp_path / "notes.png").write_text("this is text, not pixels")
    expect_error(BAD_IMAGE, "not an image", read_image, tmp_path / "notes.png")
    expect_error(BAD_IMAGE, "folder", read_image, tmp_path)
    good = io.BytesIO()
    Image.fromarray(random_pixels(64, 64, 3)).save(good, "PNG")
    (tmp_path / "cut.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    expect_error(BAD_IMAGE, "truncated", read_image, tmp_path / "cut.png")
    jpeg = io.BytesIO()
    Image.fromarray(random_pixels(64, 64, 3)).save(jpeg, "JPEG")
    expect_error(BAD_IMAGE, "truncated", decode_image_bytes, jpeg.getvalue()[:400], name="j")


def test_pixel_limit_and_decompression_bomb(tmp_path):
    write_image(tmp_path / "big.png", random_pixels(40, 50, 3))
    error = expect_error(TOO_LARGE, "megapixels", read_image, tmp_path / "big.png",
                         max_pixels=1999)
    assert "40" in error.message and "50" in error.message
    assert read_image(tmp_path / "big.png", max_pixels=2000).pixels.shape == (40, 50, 3)
    # a tiny file that claims 100000 x 100000 pixels
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header
            + struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF))
    idat = zlib.compress(b"\x00" * 64)
    bomb += (struct.pack(">I", len(idat)) + b"IDAT" + idat
             + struct.pack(">I", zlib.crc32(b"IDAT" + idat) & 0xFFFFFFFF))
    expect_error(TOO_LARGE, "", decode_image_bytes, bomb)


def test_unknown_output_extension_is_refused(tmp_path):
    expect_error(BAD_REQUEST, ".png", write_image, tmp_path / "x.xyz", random_pixels(4, 4, 3))
    assert not list(tmp_path.iterdir())
    assert imageio.output_format("a.JPG") == "JPEG"
    assert imageio.output_format("a", "tif") == "TIFF"


def test_bad_pixels_do_not_touch_an_existing_file(tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"original")
    expect_error(BAD_IMAGE, "shape", write_image, target, np.zeros((4, 4, 5), np.uint8))
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_failed_rename_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"original")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio.os, "replace", broken_replace)
    expect_error(WRITE_FAILED, "no space", write_image, target, random_pixels(4, 4, 3))
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_write_replaces_atomically_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.png"
    write_image(target, random_pixels(4, 4, 3))
    second = random_pixels(4, 4, 3)
    write_image(target, second)
    np.testing.assert_array_equal(read_image(target).pixels, second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~mask   # like a normally created file


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_has_its_own_code(tmp_path):
    path = write_image(tmp_path / "secret.png", random_pixels(4, 4, 3))
    os.chmod(path, 0)
    expect_error(UNREADABLE, "cannot read", read_image, path)


def test_read_only_folder_is_a_write_failure(tmp_path, monkeypatch):
    def no_temp(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imageio.tempfile, "mkstemp", no_temp)
    expect_error(WRITE_FAILED, "permission denied", write_image, tmp_path / "x.png",
                 random_pixels(4, 4, 3))


def test_missing_output_folder_is_a_clear_error(tmp_path):
    expect_error(BAD_REQUEST, "does not exist", write_image, tmp_path / "no" / "x.png",
                 random_pixels(4, 4, 3))
