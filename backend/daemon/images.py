"""Wire image frames <-> numpy arrays, without copies where the layout allows."""

from __future__ import annotations

import numpy as np

from stclient.errors import BAD_IMAGE, BAD_REQUEST, StyleTransferError
from stclient.protocol import ImageFrame

WIRE_DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float32": np.dtype("<f4")}


def frame_to_array(frame: ImageFrame, what: str = "image") -> np.ndarray:
    """H x W x C array viewing the frame's bytes (read-only), native byte order."""
    frame.check(what)
    array = np.frombuffer(frame.data, dtype=WIRE_DTYPES[frame.dtype])
    array = array.reshape(frame.height, frame.width, frame.channels)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if frame.dtype == "float32" and not np.isfinite(array).all():
        raise StyleTransferError(BAD_IMAGE, f"The {what} contains NaN or infinite values.")
    return array


def mask_to_array(frame: ImageFrame, height: int, width: int) -> np.ndarray:
    """A one-channel mask frame -> H x W float32 in 0..1, matching the content size."""
    if frame.channels != 1:
        raise StyleTransferError(BAD_REQUEST, f"The mask must have 1 channel, not "
                                              f"{frame.channels}.")
    if (frame.height, frame.width) != (height, width):
        raise StyleTransferError(BAD_REQUEST, f"The mask is {frame.width}x{frame.height} but the "
                                              f"content is {width}x{height}.")
    array = frame_to_array(frame, "mask")[:, :, 0]
    if frame.dtype == "uint8":
        return array.astype(np.float32) / 255.0
    if frame.dtype == "uint16":
        return array.astype(np.float32) / 65535.0
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def array_to_frame(array: np.ndarray) -> ImageFrame:
    """H x W x C (or H x W) array of a wire dtype -> ImageFrame sharing its memory."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4:
        raise StyleTransferError(BAD_IMAGE, f"The engine returned an array of shape "
                                            f"{array.shape}, not H x W x C.")
    for name, dtype in WIRE_DTYPES.items():
        if array.dtype == dtype or array.dtype == dtype.newbyteorder("="):
            wire = np.ascontiguousarray(array, dtype=dtype)
            height, width, channels = wire.shape
            return ImageFrame(width, height, channels, name, memoryview(wire).cast("B"))
    raise StyleTransferError(BAD_IMAGE, f"The engine returned pixels of type {array.dtype}.")
