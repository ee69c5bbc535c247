"""Every size that decides an allocation, checked before work starts.

A request's images are not the only sizes: a `*_size` option (working_size, style_size, MIXGAN's
sample size) scales an image to that longest side first, so a 2x2 content with working_size
16384 asks for 268 megapixels. The option specs say which options are such sizes (an int option
named `*_size`); this module does not list engines. For each image a job will allocate it checks

- the scaled pixel count against the daemon's --max-pixels (too_large), and
- the whole-image tensors those pixels need against the memory the job may use (out_of_memory):
  --max-job-memory, or by default a share of what the machine has available right now.

Network activations are not counted here: the Runtime tiles a network whose activations would
not fit its budget. What is counted are the whole images a job holds at once (input, resized
input, output, result, as float32 RGB; more where the card's perf.image_tensors says so, and the
photorealistic smoothing's), which no tiling can avoid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from stclient.card import PerfPolicy
from stclient.errors import OUT_OF_MEMORY, TOO_LARGE, StyleTransferError
from stclient.options import PHOTO_RADIUS
from stclient.registry import card, option_specs

from backend.engines.base import working_shape       # how the engines scale: the same numbers

# the cards' default (input, resized input, network output, result); a card may say more
WHOLE_IMAGE_TENSORS = PerfPolicy().image_tensors
# the photorealistic smoothing (photo_radius > 0) at full size: guide and input as tensors, the
# fast filter's 12 coefficient planes (4 RGB images), a product of 3, the result: about 10 more
SMOOTHING_TENSORS = 10
BYTES_PER_PIXEL = 3 * 4          # float32 RGB
MEMORY_SHARE = 0.6               # of MemAvailable a job may plan to use (as the Runtime's budget)


@dataclass(frozen=True)
class SizedImage:
    """One image a job allocates: what it is and its size before any option scales it."""

    what: str
    height: int
    width: int


def size_option_names(engine: str) -> list[str]:
    """The engine's options that are a longest side in pixels (int options named *_size)."""
    return [spec.name for spec in option_specs(engine)
            if spec.kind == "int" and spec.name.endswith("_size")]


def job_images(engine: str, options: dict[str, Any],
               images: Iterable[SizedImage]) -> list[SizedImage]:
    """Every image at every size the job may give it: as it is and scaled by each size option
    (an option is not told which image it scales, so each is applied to each: an upper bound)."""
    sides = [int(options.get(name) or 0) for name in size_option_names(engine)]
    result = []
    for image in images:
        result.append(image)
        for side in sides:
            if side > 0:
                height, width = working_shape(image.height, image.width, side)
                result.append(SizedImage(f"{image.what} scaled to {side} px", height, width))
    return result


def whole_image_tensors(engine: str, options: dict[str, Any]) -> int:
    """How many whole-image RGB float tensors a job of `engine` with these options holds at
    once: its card's count (perf.image_tensors), and the smoothing's when it is on."""
    smoothing = int(options.get(PHOTO_RADIUS) or 0) > 0
    return card(engine).perf.image_tensors + (SMOOTHING_TENSORS if smoothing else 0)


def check_sizes(images: Iterable[SizedImage], max_pixels: int, memory_limit: Optional[int],
                count: int = 1, tensors: int = WHOLE_IMAGE_TENSORS) -> None:
    """Raise too_large / out_of_memory before any work when the job cannot fit."""
    images = list(images)
    for image in images:
        pixels = image.height * image.width
        if pixels > max_pixels:
            raise StyleTransferError(
                TOO_LARGE, f"The {image.what} is {image.width}x{image.height} = {pixels:,} "
                           f"pixels; this daemon accepts at most {max_pixels:,} (use a smaller "
                           "size, or restart the daemon with a larger --max-pixels).")
    if not images:
        return
    largest = max(images, key=lambda image: image.height * image.width)
    need = largest.height * largest.width * BYTES_PER_PIXEL * tensors * count
    limit = memory_limit if memory_limit is not None else default_memory_limit()
    if need > limit:
        raise StyleTransferError(
            OUT_OF_MEMORY, f"The {largest.what} ({largest.width}x{largest.height}"
                           f"{f', {count} images' if count > 1 else ''}) needs about "
                           f"{need / 2**30:.1f} GiB, more than the {limit / 2**30:.1f} GiB this "
                           "job may use now; use a smaller size or fewer images.")


def default_memory_limit() -> int:
    from backend.perf.budget import available_cpu_bytes
    return int(available_cpu_bytes() * MEMORY_SHARE)


def stylize_images(content: tuple[int, int], styles: Iterable[tuple[int, int]]
                   ) -> list[SizedImage]:
    images = [SizedImage("content image", *content)]
    images += [SizedImage(f"style image {index + 1}", *shape)
               for index, shape in enumerate(styles)]
    return images


def square(what: str) -> list[SizedImage]:
    """An image known only to be square and scaled by a size option (a MIXGAN sample, or any
    input of a batch: an image scaled to side L has at most L x L pixels)."""
    return [SizedImage(what, 1, 1)]
