"""Reading and writing image files for the CLI, the daemon and the batch runner.

Why it exists: every front end must treat files the same way — upright pixels (EXIF orientation
applied), the channel layout kept (grey 1, grey+alpha 2, RGB 3, RGBA 4), 16-bit kept where the file
has it, ICC profile and EXIF carried to the output, a pixel limit against decompression bombs, a
specific error for every unreadable file, and outputs written atomically (temp file + rename) so a
crash never leaves half a file.

Pixels are numpy arrays H x W x C (C = 1..4) of uint8, uint16 or float32 (0..1).
Decoders: Pillow for everything it keeps exact; torchvision's libpng decoder for 16-bit colour PNG
and tifffile for 16-bit / float colour TIFF (Pillow reduces those to 8 bits).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageCms

from stclient.errors import (BAD_IMAGE, BAD_REQUEST, TOO_LARGE, UNREADABLE, WRITE_FAILED,
                             StyleTransferError)

DEFAULT_MAX_PIXELS = 120_000_000   # ~ 11000 x 11000; PIL's own bomb cap (~179 MP) also applies
DEFAULT_MAX_FILE_BYTES = 1 << 30   # an image file larger than this is not read at all
EXIF_ORIENTATION = 0x0112
FORMATS_BY_EXTENSION = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                        ".tif": "TIFF", ".tiff": "TIFF"}
IMAGE_EXTENSIONS = frozenset(FORMATS_BY_EXTENSION) | {".bmp", ".gif", ".tga", ".ppm", ".pgm"}
# The only Pillow decoders untrusted files are handed to (the formats IMAGE_EXTENSIONS promise).
# Everything else stays closed: EPS would run Ghostscript, and rarely used parsers are attack
# surface nobody here needs. PPM covers .pgm; MPO is how Pillow names a multi-picture JPEG.
DECODER_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF", "TGA", "PPM")
DECODED_FORMATS = frozenset(DECODER_FORMATS) | {"MPO"}
JPEG_BACKGROUND = 255  # JPEG has no alpha: transparent areas are composited over white


@dataclass
class LoadedImage:
    """An image file's upright pixels plus what should travel to the output file."""

    pixels: np.ndarray              # H x W x C, uint8 | uint16 | float32 (0..1)
    mode_info: str                  # the file's own mode, e.g. "RGBA", "I;16", "RGB;16", "P"
    icc_profile: Optional[bytes]
    exif: Optional[bytes]           # EXIF with orientation reset to 1 (pixels are upright)
    format: str                     # "PNG", "JPEG", "WEBP", "TIFF", ...
    orientation: int = 1            # the EXIF orientation that was applied

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)


# ================================================================ reading

def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> LoadedImage:
    """Decode an image file; errors are bad_image (unreadable) or too_large (pixel limit)."""
    path = Path(path)
    return decode_image_bytes(read_file_bytes(path, max_bytes), max_pixels=max_pixels,
                              name=path.name)


def read_file_bytes(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of an image file: a regular file of 1..max_bytes bytes, or a specific error.

    Opened without blocking (a FIFO or a device never stalls the open), checked on the open
    descriptor (no race with a rename), and read no further than max_bytes + 1: a pipe, a
    device, /proc or a file that keeps growing cannot make us wait or fill the memory.
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise StyleTransferError(BAD_IMAGE, f"Image not found: {path}") from None
    except IsADirectoryError:
        raise StyleTransferError(BAD_IMAGE, f"{path} is a folder, not an image file.") from None
    except OSError as error:
        raise StyleTransferError(UNREADABLE, f"Cannot read {path}: {error.strerror or error}.") \
            from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise StyleTransferError(BAD_IMAGE, f"{path} is a folder, not an image file.")
        if not stat.S_ISREG(info.st_mode):
            raise StyleTransferError(BAD_IMAGE, f"{path} is not a regular file (a pipe, socket "
                                                "or device); it is not read.")
        if info.st_size == 0:               # also /proc and /sys files, which report 0
            raise StyleTransferError(BAD_IMAGE, f"{path.name} is empty (0 bytes).")
        if info.st_size > max_bytes:
            raise _too_many_bytes(path, max_bytes)
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 22, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise _too_many_bytes(path, max_bytes)
        return b"".join(chunks)
    except OSError as error:
        raise StyleTransferError(UNREADABLE, f"Cannot read {path}: {error.strerror or error}.") \
            from None
    finally:
        os.close(fd)


def _too_many_bytes(path: Path, max_bytes: int) -> StyleTransferError:
    return StyleTransferError(TOO_LARGE, f"{path.name} is larger than {max_bytes / 2**20:.0f} "
                                         "MiB; image files that large are not read.")


def decode_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                       name: str = "image") -> LoadedImage:
    """Decode an encoded image held in memory (as received over the wire)."""
    if not data:
        raise StyleTransferError(BAD_IMAGE, f"{name} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=DECODER_FORMATS)
    except Image.DecompressionBombError as error:
        raise StyleTransferError(TOO_LARGE, f"{name} is too large to open safely: {error}") \
            from None
    except Image.UnidentifiedImageError:
        if data[:4] in (b"II*\x00", b"MM\x00*"):  # TIFF layouts Pillow lacks (float RGB, ...)
            return _decode_tiff_without_pillow(data, max_pixels, name)
        raise _unsupported(name) from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise StyleTransferError(BAD_IMAGE, f"{name} is corrupt: {error}.") from None
    if image.format not in DECODED_FORMATS:       # a plugin that adopted another format
        raise _unsupported(name)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise StyleTransferError(BAD_IMAGE, f"{name} has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise StyleTransferError(
            TOO_LARGE, f"{name} is {width}x{height} = {width * height / 1e6:.1f} megapixels, "
                       f"more than the limit of {max_pixels / 1e6:.1f} megapixels.")
    fmt = image.format or "unknown"
    icc = image.info.get("icc_profile") or None
    try:
        exif = image.getexif()
    except Exception:  # a broken EXIF block must not make the pixels unreadable
        exif = Image.Exif()
    orientation = _orientation(exif)
    try:
        pixels, mode_info, icc = _decode_pixels(image, data, fmt, icc)
    except StyleTransferError:
        raise
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error, IndexError,
            RuntimeError, KeyError) as error:
        text = str(error) or type(error).__name__
        why = "truncated" if "truncat" in text.lower() else "corrupt"
        raise StyleTransferError(BAD_IMAGE, f"{name} is {why}: {text}.") from None
    pixels = apply_orientation(pixels, orientation)
    return LoadedImage(pixels=np.ascontiguousarray(pixels), mode_info=mode_info,
                       icc_profile=icc, exif=_exif_bytes(exif, fmt), format=fmt,
                       orientation=orientation)


def _unsupported(name: str) -> StyleTransferError:
    return StyleTransferError(BAD_IMAGE, f"{name} is not an image in a format this program reads "
                                         "(PNG, JPEG, WebP, TIFF, BMP, GIF, TGA, PPM/PGM).")


def _orientation(exif: Image.Exif) -> int:
    value = exif.get(EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _exif_bytes(exif: Image.Exif, fmt: str) -> Optional[bytes]:
    """EXIF to carry to the output, orientation reset; none for TIFF (its tags describe the
    file's own layout, not camera metadata)."""
    if fmt == "TIFF" or not len(exif):
        return None
    if EXIF_ORIENTATION in exif:
        exif[EXIF_ORIENTATION] = 1
    try:
        return exif.tobytes()
    except Exception:
        return None


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels stored with EXIF orientation 1..8 upright."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(pixels, k=-1)
    if orientation == 7:
        return pixels.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(pixels, k=1)
    return pixels


def _decode_pixels(image: Image.Image, data: bytes, fmt: str,
                   icc: Optional[bytes]) -> tuple[np.ndarray, str, Optional[bytes]]:
    mode = image.mode
    if fmt == "PNG" and _png_is_16bit_colour(data):
        return _decode_png16(data), _PNG16_MODES[data[25]], icc
    if fmt == "TIFF" and _tiff_needs_tifffile(image):
        decoded = _decode_tiff_wide(data)
        if decoded is not None:
            return decoded, f"{mode};{decoded.dtype.name}", icc
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image.load()
    if mode in ("L", "LA", "RGB", "RGBA"):
        return _as_hwc(np.asarray(image)), mode, icc
    if mode == "1":
        return _as_hwc(np.asarray(image.convert("L"))), mode, icc
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _as_hwc(np.asarray(image).astype(np.uint16)), mode, icc
    if mode == "I":
        values = np.asarray(image)
        return _as_hwc(np.clip(values, 0, 65535).astype(np.uint16)), mode, icc
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
        return _as_hwc(np.clip(values, 0.0, 1.0)), mode, icc
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or image.has_transparency_data
        converted = image.convert("RGBA" if has_alpha else "RGB")
        return np.asarray(converted), mode, icc
    if mode == "La":
        return np.asarray(image.convert("LA")), mode, icc
    if mode in ("RGBa", "RGBX"):
        return np.asarray(image.convert("RGBA" if mode == "RGBa" else "RGB")), mode, icc
    if mode == "CMYK":
        return _cmyk_to_rgb(image, icc), mode, None
    # YCbCr, LAB, HSV and other colour spaces: RGB is what the networks and the outputs use
    return np.asarray(image.convert("RGB")), mode, (icc if mode == "YCbCr" else None)


def _as_hwc(array: np.ndarray) -> np.ndarray:
    return array[:, :, None] if array.ndim == 2 else array


def _cmyk_to_rgb(image: Image.Image, icc: Optional[bytes]) -> np.ndarray:
    """CMYK through its embedded profile to sRGB when there is one (colours stay right)."""
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"),
                                                  outputMode="RGB")
            if converted is not None:
                return np.asarray(converted)
        except (ImageCms.PyCMSError, OSError):
            pass
    return np.asarray(image.convert("RGB"))


_PNG16_MODES = {2: "RGB;16", 4: "LA;16", 6: "RGBA;16"}


def _png_is_16bit_colour(data: bytes) -> bool:
    """IHDR says bit depth 16 with colour type RGB, grey+alpha or RGBA (Pillow would cut those
    to 8 bits; 16-bit grey it keeps as I;16)."""
    return len(data) > 26 and data[12:16] == b"IHDR" and data[24] == 16 and data[25] in (2, 4, 6)


def _decode_png16(data: bytes) -> np.ndarray:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_png

    with warnings.catch_warnings():  # torchvision 0.29 announces a future move to torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        tensor = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                            ImageReadMode.UNCHANGED)
    if tensor.dtype == torch.uint16:
        array = tensor.permute(1, 2, 0).contiguous().view(torch.int16).numpy().view(np.uint16)
    else:
        array = tensor.permute(1, 2, 0).numpy().astype(np.uint16)
    return array.copy()


def _tiff_needs_tifffile(image: Image.Image) -> bool:
    bits = getattr(image, "tag_v2", {}).get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return len(bits) >= 2 and max(bits) > 8


def _decode_tiff_without_pillow(data: bytes, max_pixels: int, name: str) -> LoadedImage:
    try:
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            height, width = int(page.imagelength), int(page.imagewidth)
            icc = page.tags.get(34675)
            icc_bytes = bytes(icc.value) if icc is not None else None
    except Exception as error:
        raise StyleTransferError(BAD_IMAGE, f"{name} is a TIFF file that cannot be read: "
                                            f"{error}.") from None
    if width * height > max_pixels:
        raise StyleTransferError(
            TOO_LARGE, f"{name} is {width}x{height} = {width * height / 1e6:.1f} megapixels, "
                       f"more than the limit of {max_pixels / 1e6:.1f} megapixels.")
    pixels = _decode_tiff_wide(data)
    if pixels is None:
        raise StyleTransferError(BAD_IMAGE, f"{name} uses a TIFF layout or compression that "
                                            "cannot be read.")
    return LoadedImage(pixels=np.ascontiguousarray(pixels), mode_info=f"TIFF;{pixels.dtype.name}",
                       icc_profile=icc_bytes, exif=None, format="TIFF")


def _decode_tiff_wide(data: bytes) -> Optional[np.ndarray]:
    """16-bit or float multi-channel TIFF via tifffile; None if it cannot (e.g. LZW without
    imagecodecs), in which case Pillow's 8-bit reading is used."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            array = page.asarray()
            axes = page.axes
    except (KeyError, ValueError, NotImplementedError):
        return None
    if "S" in axes and axes.index("S") < axes.index("Y"):  # planar: S Y X -> Y X S
        array = np.moveaxis(array, axes.index("S"), -1)
    array = _as_hwc(np.squeeze(array)) if array.ndim != 3 else array
    if array.ndim != 3 or array.shape[2] > 4:
        array = array[..., :4] if array.ndim == 3 else None
        if array is None:
            return None
    if array.dtype == np.uint16:
        return array
    if array.dtype.kind == "f":
        return np.clip(np.nan_to_num(array.astype(np.float32)), 0.0, 1.0)
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint32:
        return (array.astype(np.float64) / 4294967295.0).astype(np.float32)
    return None


# ================================================================ writing

def output_format(path: str | os.PathLike, format: Optional[str] = None) -> str:
    """Pillow format name for an output path ('PNG', 'JPEG', 'WEBP', 'TIFF')."""
    if format:
        fmt = FORMATS_BY_EXTENSION.get("." + format.lower().lstrip("."))
        if fmt is None and format.upper() in FORMATS_BY_EXTENSION.values():
            fmt = format.upper()
        if fmt:
            return fmt
        raise StyleTransferError(BAD_REQUEST, f"Unsupported output format {format!r}; "
                                              "use png, jpg, webp or tif.")
    ext = Path(path).suffix.lower()
    if ext not in FORMATS_BY_EXTENSION:
        raise StyleTransferError(
            BAD_REQUEST, f"Cannot tell the output format of {Path(path).name!r}: use a .png, "
                         ".jpg, .jpeg, .webp, .tif or .tiff extension.")
    return FORMATS_BY_EXTENSION[ext]


def write_image(path: str | os.PathLike, pixels: np.ndarray, icc_profile: Optional[bytes] = None,
                exif: Optional[bytes] = None, quality: int = 95,
                format: Optional[str] = None) -> str:
    """Write pixels atomically (temp file in the same folder, then rename); returns the path.

    Format from `format` or the extension. 16-bit is kept by PNG and TIFF (float32 input becomes
    16-bit PNG or float TIFF); JPEG and WebP get 8 bits, properly rounded. JPEG has no alpha: the image is
    composited over white. EXIF is written with orientation 1 (pixels are upright).
    """
    path = Path(path)
    fmt = output_format(path, format)
    data = encode_image_bytes(pixels, fmt, icc_profile=icc_profile, exif=exif, quality=quality)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise StyleTransferError(BAD_REQUEST, f"Output folder does not exist: {folder}")
    if path.is_dir():
        raise StyleTransferError(BAD_REQUEST, f"Output path {path} is a folder.")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise StyleTransferError(WRITE_FAILED, f"Cannot write to {folder}: "
                                               f"{error.strerror or error}.") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    except OSError as error:
        _remove_quietly(tmp_name)
        raise StyleTransferError(WRITE_FAILED, f"Cannot write {path}: "
                                               f"{error.strerror or error}.") from None
    except BaseException:
        _remove_quietly(tmp_name)
        raise
    return str(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


def encode_image_bytes(pixels: np.ndarray, format: str = "PNG",
                       icc_profile: Optional[bytes] = None, exif: Optional[bytes] = None,
                       quality: int = 95) -> bytes:
    """Encode pixels to PNG/JPEG/WEBP/TIFF bytes (same rules as write_image)."""
    fmt = output_format("", format)
    pixels = check_pixels(pixels)
    channels = pixels.shape[2]
    icc_profile = _icc_for(icc_profile, channels)
    exif = _reset_orientation(exif) if fmt != "TIFF" else None
    if not 1 <= int(quality) <= 100:
        raise StyleTransferError(BAD_REQUEST, f"JPEG/WebP quality must be 1..100, not {quality}.")
    wide = pixels.dtype != np.uint8
    if fmt == "PNG" and wide:
        return _encode_png16(to_uint16(pixels), icc_profile, exif)
    if fmt == "TIFF" and wide:
        return _encode_tiff_wide(pixels, icc_profile)
    pixels8 = to_uint8(pixels)
    if fmt == "JPEG" and channels in (2, 4):
        pixels8 = _flatten_over(pixels8, JPEG_BACKGROUND)
        channels -= 1
    image = Image.fromarray(pixels8[:, :, 0] if channels == 1 else pixels8,
                            {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels])
    if fmt == "WEBP" and channels in (1, 2):
        image = image.convert("RGBA" if channels == 2 else "RGB")  # WebP has no grey mode
        icc_profile = None
    options: dict = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=int(quality), subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        options.update(quality=int(quality), lossless=int(quality) == 100, method=4)
    elif fmt == "PNG":
        options.update(compress_level=6)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def check_pixels(pixels: np.ndarray) -> np.ndarray:
    """Validate the pixel contract (H x W x C, C 1..4, uint8/uint16/float) and return HxWxC."""
    if not isinstance(pixels, np.ndarray):
        raise StyleTransferError(BAD_IMAGE, "Pixels must be a numpy array.")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or 0 in pixels.shape:
        raise StyleTransferError(
            BAD_IMAGE, f"Pixels must be H x W x C with C = 1..4, not shape {pixels.shape}.")
    if pixels.dtype not in (np.uint8, np.uint16) and pixels.dtype.kind != "f":
        raise StyleTransferError(BAD_IMAGE, f"Unsupported pixel type {pixels.dtype}.")
    return pixels


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Round (not truncate) to 8 bits."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return _round_scaled(pixels, 255).astype(np.uint8)


def to_uint16(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint16:
        return pixels
    if pixels.dtype == np.uint8:
        return pixels.astype(np.uint16) * 257
    return _round_scaled(pixels, 65535).astype(np.uint16)


def _round_scaled(pixels: np.ndarray, top: int) -> np.ndarray:
    """0..1 floats to 0..top integers, halves rounded up (numpy's round would go to even)."""
    clipped = np.clip(np.nan_to_num(pixels.astype(np.float32), nan=0.0), 0.0, 1.0)
    return np.floor(clipped * top + 0.5)


def _flatten_over(pixels8: np.ndarray, background: int) -> np.ndarray:
    colour = pixels8[:, :, :-1].astype(np.float32)
    alpha = pixels8[:, :, -1:].astype(np.float32) / 255.0
    flat = colour * alpha + background * (1.0 - alpha)
    return np.round(flat).astype(np.uint8)


def _icc_for(icc: Optional[bytes], channels: int) -> Optional[bytes]:
    """Keep a profile only if its colour space fits the pixels (an RGB profile on a grey file is
    invalid)."""
    if not icc or len(icc) < 20:
        return None
    space = icc[16:20]
    if channels >= 3 and space != b"RGB ":
        return None
    if channels <= 2 and space != b"GRAY":
        return None
    return icc


def _reset_orientation(exif: Optional[bytes]) -> Optional[bytes]:
    if not exif:
        return None
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        parsed[EXIF_ORIENTATION] = 1
        return parsed.tobytes()
    except Exception:  # unparsable EXIF is dropped rather than written half-right
        return None


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def _encode_png16(pixels: np.ndarray, icc: Optional[bytes], exif: Optional[bytes]) -> bytes:
    """16-bit PNG of any channel count (Pillow writes only 16-bit grey). Rows use the Sub filter."""
    height, width, channels = pixels.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = pixels.astype(">u2").reshape(height, width * channels).view(np.uint8)
    step = channels * 2
    filtered = raw.copy()
    filtered[:, step:] = raw[:, step:] - raw[:, :-step]  # uint8 arithmetic wraps mod 256
    rows = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1)  # filter 1 = Sub
    parts = [b"\x89PNG\r\n\x1a\n",
             _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))]
    if icc:
        parts.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        parts.append(_png_chunk(b"eXIf", body))
    parts.append(_png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)))
    parts.append(_png_chunk(b"IEND", b""))
    return b"".join(parts)


def _encode_tiff_wide(pixels: np.ndarray, icc: Optional[bytes]) -> bytes:
    """16-bit (uint16) or 32-bit float TIFF, deflate-compressed, via tifffile."""
    import tifffile

    channels = pixels.shape[2]
    if pixels.dtype.kind == "f":
        pixels = np.clip(np.nan_to_num(pixels.astype(np.float32)), 0.0, 1.0)
    data = pixels[:, :, 0] if channels == 1 else pixels
    options: dict = dict(photometric="rgb" if channels >= 3 else "minisblack",
                         compression="zlib")
    if channels in (2, 4):
        options["extrasamples"] = ["unassalpha"]
    if channels == 2:
        options["planarconfig"] = "contig"
    if icc:
        options["iccprofile"] = icc
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, data, **options)
    return buffer.getvalue()


def is_image_path(path: str | os.PathLike) -> bool:
    """True if the path has an image file extension (the CLI's file-versus-folder rule)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
