"""The wire protocol between clients (plug-in, CLI, scripts) and the daemon: the one codec.

Every message is a ZeroMQ multipart message: frame 0 is a UTF-8 JSON object (the header), the
following frames are raw pixel bytes that the header describes. Nothing is ever pickled. Requests
carry {"v": PROTOCOL_VERSION, "id": request id, "op": operation, ...}; replies carry
{"v", "id", "type": "progress" | "result" | "error" | "heartbeat", ...}. docs/protocol.md is the
human-readable version of this module.

Standard library only (this runs inside GIMP's Python): images are `ImageFrame`s holding bytes;
the backend turns them into numpy arrays itself. Decoding validates structure (types, frame count,
byte lengths) and raises `ProtocolError` (code bad_request or too_large); semantic checks (known
model, option ranges, pixel limits) are the daemon's job.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence, Union

from . import PROTOCOL_VERSION
from .errors import BAD_REQUEST, ERROR_CODES, INTERNAL, TOO_LARGE, StyleTransferError

Buffer = Union[bytes, bytearray, memoryview]

DTYPE_SIZES = {"uint8": 1, "uint16": 2, "float32": 4}   # little-endian on the wire
MAX_CHANNELS = 4
MAX_SIDE = 1 << 20            # structural sanity bound; the daemon's --max-pixels is the real limit
MAX_HEADER_BYTES = 16 << 20   # request headers: JSON only (a batch may list many files)
MAX_REPLY_HEADER_BYTES = 1 << 28   # from our own daemon: a batch report lists every file
MAX_ID_LENGTH = 128
MAX_STYLES = 16
MAX_SAMPLE_COUNT = 256
MAX_JSON_INT = 2 ** 63        # |integers| in headers stay below this (every count, size, seed)

REQUEST_OPS = ("status", "models", "stylize", "batch", "sample", "cancel", "shutdown",
               "heartbeat", "estimate", "intermediate")
REPLY_TYPES = ("progress", "result", "error", "heartbeat", "intermediate")


class ProtocolError(StyleTransferError):
    """A message that does not follow the protocol; `request_id` is set when it could be read."""

    def __init__(self, code: str, message: str, request_id: str = "") -> None:
        super().__init__(code, message)
        self.request_id = request_id


def new_request_id() -> str:
    """Unguessable ids: a client may cancel any job by id, so ids must not collide."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------------------- images

@dataclass
class ImageFrame:
    """Pixels H x W x C (row-major, interleaved channels, little-endian) plus their description."""

    width: int
    height: int
    channels: int
    dtype: str
    data: Buffer = b""

    @property
    def itemsize(self) -> int:
        return DTYPE_SIZES[self.dtype]

    @property
    def expected_nbytes(self) -> int:
        return self.width * self.height * self.channels * self.itemsize

    def describe(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "channels": self.channels,
                "dtype": self.dtype}

    def check(self, what: str = "image") -> "ImageFrame":
        """Raise ProtocolError unless the description is sane and the bytes match it."""
        check_description(self.describe(), what)
        nbytes = memoryview(self.data).nbytes
        if nbytes != self.expected_nbytes:
            raise ProtocolError(
                BAD_REQUEST,
                f"The {what} frame has {nbytes} bytes, but {self.width}x{self.height}x"
                f"{self.channels} {self.dtype} needs {self.expected_nbytes}.")
        return self

    @classmethod
    def from_description(cls, desc: Any, data: Buffer, what: str = "image") -> "ImageFrame":
        check_description(desc, what)
        return cls(desc["width"], desc["height"], desc["channels"], desc["dtype"], data).check(what)


def check_description(desc: Any, what: str) -> None:
    if not isinstance(desc, dict):
        raise ProtocolError(BAD_REQUEST, f"The {what} description must be a JSON object.")
    extra = set(desc) - {"width", "height", "channels", "dtype"}
    if extra:
        raise ProtocolError(BAD_REQUEST,
                            f"The {what} description has unknown field(s) {sorted(extra)}.")
    for key in ("width", "height", "channels"):
        value = desc.get(key)
        if not _is_int(value) or value < 1:
            raise ProtocolError(BAD_REQUEST, f"The {what} '{key}' must be a positive integer.")
    if desc["width"] > MAX_SIDE or desc["height"] > MAX_SIDE:
        raise ProtocolError(TOO_LARGE, f"The {what} is {desc['width']}x{desc['height']} pixels; "
                                       f"sides are limited to {MAX_SIDE}.")
    if desc["channels"] > MAX_CHANNELS:
        raise ProtocolError(BAD_REQUEST, f"The {what} has {desc['channels']} channels; "
                                         f"1 to {MAX_CHANNELS} are supported.")
    if desc.get("dtype") not in DTYPE_SIZES:
        raise ProtocolError(BAD_REQUEST, f"The {what} dtype must be one of "
                                         f"{', '.join(DTYPE_SIZES)}, not {desc.get('dtype')!r}.")


# ------------------------------------------------------------------------------ field helpers

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _get(header: dict, key: str, kinds: tuple, default: Any = ..., what: str = "") -> Any:
    """Typed field access: a missing required field or a wrong type is a bad_request."""
    if key not in header or header[key] is None:
        if default is ...:
            raise ProtocolError(BAD_REQUEST, f"The request lacks the field '{key}'.",
                                _rid(header))
        return default
    value = header[key]
    ok = any(_is_int(value) if kind is int else
             (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value)) if kind is float else isinstance(value, kind)
             for kind in kinds)
    if not ok:
        names = " or ".join("number" if k is float else k.__name__ for k in kinds)
        raise ProtocolError(BAD_REQUEST, f"The field '{key}' must be a {names}{what}.",
                            _rid(header))
    return value


def _rid(header: Any) -> str:
    """The header's id when it is a valid one (the client can match it), else ""."""
    if isinstance(header, dict) and isinstance(header.get("id"), str):
        rid = header["id"]
        if len(rid) <= MAX_ID_LENGTH and _encodable(rid):
            return rid
    return ""


def _encodable(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON "\\ud800"): no file name, no log line
    and no UTF-8 reply can carry it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _str_list(header: dict, key: str) -> list[str]:
    values = _get(header, key, (list,), [])
    if not all(isinstance(v, str) and v for v in values):
        raise ProtocolError(BAD_REQUEST, f"The field '{key}' must be a list of non-empty strings.",
                            _rid(header))
    return list(values)


def _deadline(header: dict) -> Optional[float]:
    value = _get(header, "deadline_s", (float,), None)
    if value is not None and value <= 0:
        raise ProtocolError(BAD_REQUEST, "The field 'deadline_s' must be positive.", _rid(header))
    return None if value is None else float(value)


def _expect_frames(header: dict, frames: Sequence[Buffer], count: int) -> None:
    if len(frames) != count:
        raise ProtocolError(BAD_REQUEST, f"The '{header.get('op') or header.get('type')}' message "
                                         f"has {len(frames)} binary frame(s), expected {count}.",
                            _rid(header))


def encode_header(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_header(frame: Buffer, limit: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    """Parse frame 0. Raises ProtocolError for anything but a JSON object of sane size."""
    raw = bytes(frame) if not isinstance(frame, bytes) else frame
    if len(raw) > limit:
        raise ProtocolError(TOO_LARGE, f"The header is {len(raw)} bytes; the limit is "
                                       f"{limit}.")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_out_of_range,
                            parse_int=_parse_int, parse_float=_parse_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ProtocolError(BAD_REQUEST, f"The header is not valid UTF-8 JSON ({error}).") from None
    if not isinstance(header, dict):
        raise ProtocolError(BAD_REQUEST, "The header must be a JSON object.")
    problem = _value_problem(header)
    if problem:
        raise ProtocolError(BAD_REQUEST, f"The header {problem}.", _rid(header))
    return header


def peek_id(frame: Buffer) -> str:
    """The request id of a header frame when it is readable, else "" (for early refusals)."""
    try:
        return _rid(decode_header(frame))
    except ProtocolError as error:
        return error.request_id


class _OutOfRange:
    """Stands in for a number no field can hold, so the header (and its id) still parses and
    the request is refused as bad_request with its id, instead of failing later as internal."""


_OUT_OF_RANGE = _OutOfRange()


def _out_of_range(name: str) -> Any:
    """NaN and Infinity: refused like any number out of range (after the id is known)."""
    return _OUT_OF_RANGE


def _parse_int(text: str) -> Any:
    if len(text) > 20:                      # cheap: never convert a 4000-digit string
        return _OUT_OF_RANGE
    value = int(text)
    return value if -MAX_JSON_INT < value < MAX_JSON_INT else _OUT_OF_RANGE


def _parse_float(text: str) -> Any:
    value = float(text)                     # 1e400 is inf here
    return value if math.isfinite(value) else _OUT_OF_RANGE


def _value_problem(header: dict) -> str:
    """Why a parsed header holds a value no field can take (a number out of range, a string
    with a lone surrogate), or ""."""
    stack: list[Any] = [header]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    return "has a field name that is not valid Unicode"
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
        elif value is _OUT_OF_RANGE:
            return (f"holds a number out of range (integers must be below 2**63 in size, "
                    "numbers finite)")
        elif isinstance(value, str) and not _encodable(value):
            return "holds text that is not valid Unicode (a lone surrogate)"
    return ""


def _check_envelope(header: dict, kind_key: str, allowed: Sequence[str]) -> str:
    version = header.get("v")
    if not _is_int(version):
        raise ProtocolError(BAD_REQUEST, "The header lacks an integer protocol version 'v'.",
                            _rid(header))
    if version != PROTOCOL_VERSION:
        raise ProtocolError(BAD_REQUEST, f"Protocol version {version} is not supported (this side "
                                         f"speaks {PROTOCOL_VERSION}); update the plug-in and the "
                                         "backend together.", _rid(header))
    rid = header.get("id")
    if not isinstance(rid, str) or len(rid) > MAX_ID_LENGTH:
        raise ProtocolError(BAD_REQUEST, f"The request id 'id' must be a string of at most "
                                         f"{MAX_ID_LENGTH} characters.", _rid(header))
    kind = header.get(kind_key)
    if kind not in allowed:
        raise ProtocolError(BAD_REQUEST, f"Unknown {kind_key} {kind!r}; known: "
                                         f"{', '.join(allowed)}.", rid)
    return kind


# ------------------------------------------------------------------------------------ requests

@dataclass
class Request:
    """Base of all requests: the id, and the token that TCP endpoints require."""

    OP: ClassVar[str] = ""
    id: str = field(default_factory=new_request_id)
    token: Optional[str] = None

    def _header(self, **fields: Any) -> dict[str, Any]:
        header = {"v": PROTOCOL_VERSION, "id": self.id, "op": self.OP}
        if self.token is not None:
            header["token"] = self.token
        header.update({k: v for k, v in fields.items() if v is not None})
        return header

    def to_frames(self) -> list[Buffer]:
        return [encode_header(self._header())]

    def check_size(self, frames: list[Buffer]) -> list[Buffer]:
        """Refuse locally what the daemon would refuse: a header over MAX_HEADER_BYTES."""
        if len(frames[0]) > MAX_HEADER_BYTES:
            raise ProtocolError(TOO_LARGE, f"The request header is {len(frames[0])} bytes; the "
                                           f"limit is {MAX_HEADER_BYTES} (split the batch).")
        return frames

    @classmethod
    def _from(cls, header: dict, frames: Sequence[Buffer], **fields: Any) -> "Request":
        return cls(id=header["id"], token=_get(header, "token", (str,), None), **fields)

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "Request":
        _expect_frames(header, frames, 0)
        return cls._from(header, frames)


@dataclass
class StatusRequest(Request):
    OP: ClassVar[str] = "status"


@dataclass
class ModelsRequest(Request):
    OP: ClassVar[str] = "models"


@dataclass
class ShutdownRequest(Request):
    OP: ClassVar[str] = "shutdown"


@dataclass
class HeartbeatRequest(Request):
    """Sent every HEARTBEAT_INTERVAL while a client waits, so the daemon knows it is alive."""

    OP: ClassVar[str] = "heartbeat"


@dataclass
class CancelRequest(Request):
    OP: ClassVar[str] = "cancel"
    target: str = ""

    def to_frames(self) -> list[Buffer]:
        return [encode_header(self._header(target=self.target))]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "CancelRequest":
        _expect_frames(header, frames, 0)
        target = _get(header, "target", (str,))
        return cls._from(header, frames, target=target)


@dataclass
class StylizeRequest(Request):
    """Content pixels + styles as pixels and/or absolute file paths the daemon reads + a mask."""

    OP: ClassVar[str] = "stylize"
    engine: str = ""
    content: Optional[ImageFrame] = None
    model: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict)
    styles: list[ImageFrame] = field(default_factory=list)
    style_paths: list[str] = field(default_factory=list)
    mask: Optional[ImageFrame] = None
    deadline_s: Optional[float] = None
    # the client wants the image so far (engines whose card has an intermediate_option): the
    # first `intermediate` reply comes unasked, each next one after an IntermediateRequest
    intermediates: bool = False

    def to_frames(self) -> list[Buffer]:
        if self.content is None:
            raise ProtocolError(BAD_REQUEST, "A stylize request needs a content image.")
        images = [self.content, *self.styles] + ([self.mask] if self.mask is not None else [])
        header = self._header(
            engine=self.engine, model=self.model, options=self.options,
            content=self.content.describe(), styles=[s.describe() for s in self.styles],
            style_paths=list(self.style_paths),
            mask=self.mask.describe() if self.mask is not None else None,
            deadline_s=self.deadline_s, intermediates=self.intermediates or None)
        return [encode_header(header), *(image.data for image in images)]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "StylizeRequest":
        rid = _rid(header)
        engine = _get(header, "engine", (str,))
        model = _get(header, "model", (str,), None)
        options = _get(header, "options", (dict,), {})
        style_descs = _get(header, "styles", (list,), [])
        mask_desc = _get(header, "mask", (dict,), None)
        if len(style_descs) > MAX_STYLES:
            raise ProtocolError(BAD_REQUEST, f"At most {MAX_STYLES} style images are allowed.", rid)
        style_paths = _str_list(header, "style_paths")
        if len(style_paths) + len(style_descs) > MAX_STYLES:
            raise ProtocolError(BAD_REQUEST, f"At most {MAX_STYLES} style images are allowed.", rid)
        if "content" not in header:
            raise ProtocolError(BAD_REQUEST, "The request lacks the field 'content'.", rid)
        _expect_frames(header, frames, 1 + len(style_descs) + (mask_desc is not None))
        try:
            content = ImageFrame.from_description(header["content"], frames[0], "content image")
            styles = [ImageFrame.from_description(desc, frames[1 + i], f"style image {i + 1}")
                      for i, desc in enumerate(style_descs)]
            mask = (ImageFrame.from_description(mask_desc, frames[-1], "mask")
                    if mask_desc is not None else None)
        except ProtocolError as error:
            error.request_id = rid
            raise
        return cls._from(header, frames, engine=engine, content=content, model=model,
                         options=options, styles=styles, style_paths=style_paths, mask=mask,
                         deadline_s=_deadline(header),
                         intermediates=_get(header, "intermediates", (bool,), False))


@dataclass
class EstimateRequest(Request):
    """How long a stylize job of this engine, size and options would take (engines whose card
    `estimates`); no pixels: the content's size and the number of styles say enough."""

    OP: ClassVar[str] = "estimate"
    engine: str = ""
    width: int = 0
    height: int = 0
    styles: int = 1
    mask: bool = False
    model: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict)
    deadline_s: Optional[float] = None

    def to_frames(self) -> list[Buffer]:
        return [encode_header(self._header(
            engine=self.engine, width=self.width, height=self.height, styles=self.styles,
            mask=self.mask, model=self.model, options=self.options,
            deadline_s=self.deadline_s))]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "EstimateRequest":
        _expect_frames(header, frames, 0)
        rid = _rid(header)
        width, height = _get(header, "width", (int,)), _get(header, "height", (int,))
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise ProtocolError(BAD_REQUEST, f"'width' and 'height' must be 1 to {MAX_SIDE}.",
                                rid)
        styles = _get(header, "styles", (int,), 1)
        if not 0 <= styles <= MAX_STYLES:
            raise ProtocolError(BAD_REQUEST, f"'styles' must be 0 to {MAX_STYLES}.", rid)
        return cls._from(header, frames, engine=_get(header, "engine", (str,)), width=width,
                         height=height, styles=styles, mask=_get(header, "mask", (bool,), False),
                         model=_get(header, "model", (str,), None),
                         options=_get(header, "options", (dict,), {}),
                         deadline_s=_deadline(header))


@dataclass
class IntermediateRequest(Request):
    """"Send me the next image so far of job `target`": the one credit that keeps intermediate
    frames bounded (at most one on its way per job; the daemon keeps only the newest)."""

    OP: ClassVar[str] = "intermediate"
    target: str = ""

    def to_frames(self) -> list[Buffer]:
        return [encode_header(self._header(target=self.target))]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "IntermediateRequest":
        _expect_frames(header, frames, 0)
        return cls._from(header, frames, target=_get(header, "target", (str,)))


@dataclass
class BatchRequest(Request):
    """A folder job: `spec` is backend.batch.spec.BatchSpec as JSON; the daemon reads/writes files."""

    OP: ClassVar[str] = "batch"
    spec: dict[str, Any] = field(default_factory=dict)
    deadline_s: Optional[float] = None

    def to_frames(self) -> list[Buffer]:
        return [encode_header(self._header(spec=self.spec, deadline_s=self.deadline_s))]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "BatchRequest":
        _expect_frames(header, frames, 0)
        return cls._from(header, frames, spec=_get(header, "spec", (dict,)),
                         deadline_s=_deadline(header))


@dataclass
class SampleRequest(Request):
    """`count` new images from the prior of `model`, reproducible with `seed`, for an engine whose
    card can sample (`engine` None: the one engine that can, e.g. MIXGAN)."""

    OP: ClassVar[str] = "sample"
    model: Optional[str] = None
    count: int = 1
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    deadline_s: Optional[float] = None
    engine: Optional[str] = None

    def to_frames(self) -> list[Buffer]:
        return [encode_header(self._header(model=self.model, count=self.count, seed=self.seed,
                                           options=self.options, deadline_s=self.deadline_s,
                                           engine=self.engine))]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "SampleRequest":
        _expect_frames(header, frames, 0)
        count = _get(header, "count", (int,), 1)
        if not 1 <= count <= MAX_SAMPLE_COUNT:
            raise ProtocolError(BAD_REQUEST, f"'count' must be 1 to {MAX_SAMPLE_COUNT}.",
                                _rid(header))
        seed = _get(header, "seed", (int,), 0)
        if not 0 <= seed < 2**31:
            raise ProtocolError(BAD_REQUEST, "'seed' must be 0 to 2147483647.", _rid(header))
        return cls._from(header, frames, model=_get(header, "model", (str,), None), count=count,
                         seed=seed, options=_get(header, "options", (dict,), {}),
                         deadline_s=_deadline(header),
                         engine=_get(header, "engine", (str,), None))


REQUEST_TYPES: dict[str, type[Request]] = {
    cls.OP: cls for cls in (StatusRequest, ModelsRequest, StylizeRequest, BatchRequest,
                            SampleRequest, CancelRequest, ShutdownRequest, HeartbeatRequest,
                            EstimateRequest, IntermediateRequest)}


def decode_request(frames: Sequence[Buffer]) -> Request:
    """Frames (without the ROUTER identity) -> a typed request, or ProtocolError."""
    if not frames:
        raise ProtocolError(BAD_REQUEST, "Empty message.")
    header = decode_header(frames[0])
    op = _check_envelope(header, "op", REQUEST_OPS)
    return REQUEST_TYPES[op].parse(header, list(frames[1:]))


# ------------------------------------------------------------------------------------- replies

@dataclass
class Reply:
    TYPE: ClassVar[str] = ""
    id: str = ""

    def _header(self, **fields: Any) -> dict[str, Any]:
        header = {"v": PROTOCOL_VERSION, "id": self.id, "type": self.TYPE}
        header.update(fields)
        return header

    def to_frames(self) -> list[Buffer]:
        return [encode_header(self._header())]


@dataclass
class Progress(Reply):
    TYPE: ClassVar[str] = "progress"
    fraction: float = 0.0
    text: str = ""

    def to_frames(self) -> list[Buffer]:
        fraction = float(self.fraction) if math.isfinite(self.fraction) else 0.0
        fraction = min(1.0, max(0.0, fraction))
        return [encode_header(self._header(fraction=fraction, text=self.text))]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "Progress":
        _expect_frames(header, frames, 0)
        return cls(id=header["id"], fraction=float(_get(header, "fraction", (float,))),
                   text=_get(header, "text", (str,), ""))


@dataclass
class Result(Reply):
    """The answer to any op: JSON `data` plus zero or more images (stylize: 1, sample: count)."""

    TYPE: ClassVar[str] = "result"
    op: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    images: list[ImageFrame] = field(default_factory=list)

    def to_frames(self) -> list[Buffer]:
        header = self._header(op=self.op, data=self.data,
                              images=[image.describe() for image in self.images])
        return [encode_header(header), *(image.data for image in self.images)]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "Result":
        descs = _get(header, "images", (list,), [])
        _expect_frames(header, frames, len(descs))
        images = [ImageFrame.from_description(d, f, f"result image {i + 1}")
                  for i, (d, f) in enumerate(zip(descs, frames))]
        return cls(id=header["id"], op=_get(header, "op", (str,), ""),
                   data=_get(header, "data", (dict,), {}), images=images)


@dataclass
class Error(Reply):
    TYPE: ClassVar[str] = "error"
    code: str = INTERNAL
    message: str = ""

    def to_frames(self) -> list[Buffer]:
        return [encode_header(self._header(code=self.code, message=self.message))]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "Error":
        code = _get(header, "code", (str,), INTERNAL)
        return cls(id=header["id"], code=code if code in ERROR_CODES else INTERNAL,
                   message=_get(header, "message", (str,), ""))

    def to_exception(self) -> StyleTransferError:
        from .errors import CANCELLED, Cancelled
        if self.code == CANCELLED:
            return Cancelled(self.message or "The job was cancelled.")
        return StyleTransferError(self.code, self.message or "The daemon reported an error.")

    @classmethod
    def from_exception(cls, request_id: str, error: BaseException) -> "Error":
        if isinstance(error, StyleTransferError):
            return cls(id=request_id, code=error.code, message=error.message)
        return cls(id=request_id, code=INTERNAL,
                   message=f"Internal error in the daemon ({type(error).__name__}: {error}); "
                           "see the daemon log.")


@dataclass
class Intermediate(Reply):
    """A running job's image so far (same size, channels and dtype as its result), with the
    progress it was taken at."""

    TYPE: ClassVar[str] = "intermediate"
    fraction: float = 0.0
    text: str = ""
    image: Optional[ImageFrame] = None

    def to_frames(self) -> list[Buffer]:
        if self.image is None:
            raise ProtocolError(INTERNAL, "An intermediate reply needs an image.")
        fraction = min(1.0, max(0.0, float(self.fraction) if math.isfinite(self.fraction)
                                else 0.0))
        return [encode_header(self._header(fraction=fraction, text=self.text,
                                           image=self.image.describe())), self.image.data]

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "Intermediate":
        _expect_frames(header, frames, 1)
        image = ImageFrame.from_description(_get(header, "image", (dict,)), frames[0],
                                            "intermediate image")
        return cls(id=header["id"], fraction=float(_get(header, "fraction", (float,), 0.0)),
                   text=_get(header, "text", (str,), ""), image=image)


@dataclass
class Heartbeat(Reply):
    """The daemon's liveness signal to a client with outstanding jobs (`id` is empty)."""

    TYPE: ClassVar[str] = "heartbeat"

    @classmethod
    def parse(cls, header: dict, frames: Sequence[Buffer]) -> "Heartbeat":
        return cls(id=header["id"])


REPLY_CLASSES: dict[str, Any] = {"progress": Progress, "result": Result, "error": Error,
                                 "heartbeat": Heartbeat, "intermediate": Intermediate}


def decode_reply(frames: Sequence[Buffer]) -> Reply:
    if not frames:
        raise ProtocolError(BAD_REQUEST, "Empty reply.")
    header = decode_header(frames[0], MAX_REPLY_HEADER_BYTES)
    kind = _check_envelope(header, "type", REPLY_TYPES)
    return REPLY_CLASSES[kind].parse(header, list(frames[1:]))
