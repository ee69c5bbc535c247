"""Progress that follows the real work: every convolution (and conditional instance norm) reports
the share of the job's cost it has done, weighted by what each layer costs, not by how many
layers there are.

Why: the layers of one network differ in cost by 10x and more (a 7x7 convolution with three output
channels runs at a tenth of the speed of a native 3x3 one), so a bar that counts layers sits near
its end for a third of the job. Each convolution's cost is `nanoseconds per output element` x the
elements it produced. That rate is *measured*: after every run the time between consecutive
convolutions is attributed to the later one and kept on the module (an exponential average), so
a loaded model's second job, and every later one, is weighted by its own measured cost on this
device. All layers of these networks scale with the input's area, so a rate measured at one size
holds at every size. Before the first measurement a layer's rate is a rough model (FLOPs per
output element x a penalty for kinds that run slowly on CPUs, calibrated on CycleGAN and AdaIN).

    with tracked(network, ctx, 0.0, 0.97, "running the generator", x.shape):
        y = network(x)

Outputs on the `meta` device are ignored: the memory guard's estimate runs the network on meta
tensors (shapes only), and those calls must not count as work.

A network run by the fused native kernel (backend/perf/fused.py: CIN, Magenta) calls no
convolution module. Its runner tells the tracker the steps of the pass before the first one
(`begin_steps`: the total is then those steps' cost at this input size) and reports each step's
raw output (`after_step`), timed the same way; the rates of those steps are kept on each step's
weight (`FUSED_RATE_ATTR`, apart from the module rates: the two paths differ in relative cost
per layer). Measured rates live on the convolution's weight parameter, so networks that build
their chain of modules per call (CIN) keep them too.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from backend.networks.conv_steps import ConvStep, ResidualSteps, Step
from backend.networks.style_norm import ConditionalInstanceNorm2d
from backend.perf import shapes

RATE_ATTR = "_st_measured"            # (seconds, elements) measured, kept on each conv weight
FUSED_RATE_ATTR = "_st_measured_fused"  # the same, measured through the fused kernel
COUNTS_ATTR = "_st_output_elements"  # per input shape, kept on the network
DECAY = 0.5                           # what older measurements still count, per run
NS_PER_FLOP = 0.004                   # a native 3x3 convolution on a desktop CPU (measured)
SLOW_KIND = 2.5                       # strided, transposed, 1x1 and 7x7 convolutions
MIN_NS = 0.05                         # every layer touches its output at least once

NORM_NS = 1.5                         # a conditional instance norm (statistics, scale, shift)

CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)
# the layers that report: convolutions, and the conditional instance norms, whose per-region
# statistics (per-pixel styles, backend/networks/style_norm.py) cost more than the conv before
WORK = CONVOLUTIONS + (ConditionalInstanceNorm2d,)


def convolutions(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, CONVOLUTIONS)]


def work_layers(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, WORK)]


def _holder(layer: nn.Module) -> Any:
    """Where a layer's measured rate is kept: a convolution's weight (a network may build its
    convolution modules per call around the same weight), else the layer itself."""
    weight = getattr(layer, "weight", None)
    return weight if isinstance(layer, CONVOLUTIONS) and weight is not None else layer


def modelled_ns(c_in: int, c_out: int, kernel: tuple[int, int], stride: int = 1,
                transposed: bool = False) -> float:
    """The modelled nanoseconds per output element of a convolution (before any measurement);
    `c_in` per group."""
    kh, kw = kernel
    if transposed:
        flops = 2.0 * c_in * kh * kw / max(1, stride * stride)
    else:
        flops = 2.0 * c_in * kh * kw
    fast = (kh, kw) == (3, 3) and stride == 1 and not transposed
    penalty = 1.0 if fast else SLOW_KIND
    if c_out < 32:          # too few outputs to fill a GEMM: mostly waiting on memory
        penalty *= (32.0 / c_out) ** 0.7
    if c_in < 32:
        penalty *= (32.0 / c_in) ** 0.3
    return max(MIN_NS, flops * NS_PER_FLOP * penalty)


def model_rate(conv: nn.Module) -> float:
    """The modelled nanoseconds per output element of `conv` (before any measurement)."""
    return modelled_ns(conv.in_channels // conv.groups, conv.out_channels,
                       tuple(conv.kernel_size), int(conv.stride[0]),
                       isinstance(conv, nn.ConvTranspose2d))


def _measured(holder: Any, attr: str) -> Optional[float]:
    measured = getattr(holder, attr, None)
    if measured and measured[1] > 0:
        return measured[0] * 1e9 / measured[1]
    return None


def rate(layer: nn.Module, fused: bool = False) -> float:
    """Measured nanoseconds per output element (`fused`: preferring what the fused kernel
    measured), or the model's until a run has measured it."""
    attrs = (FUSED_RATE_ATTR, RATE_ATTR) if fused else (RATE_ATTR,)
    for attr in attrs:
        measured = _measured(_holder(layer), attr)
        if measured is not None:
            return measured
    return model_rate(layer) if isinstance(layer, CONVOLUTIONS) else NORM_NS


def step_rate(step: ConvStep) -> float:
    """A fused step's measured rate, else the model's for its geometry."""
    measured = _measured(step.weight, FUSED_RATE_ATTR)
    if measured is not None:
        return measured
    k_out, k_in, kh, kw = step.weight.shape
    return modelled_ns(int(k_in), int(k_out), (int(kh), int(kw)), step.stride)


def step_elements(steps: Sequence[Step], input_shape: tuple[int, ...]) -> list[tuple[ConvStep, int]]:
    """Each conv step of a pass and the elements of its raw output for an input of that shape
    (the fused runner's geometry: [upsample,] reflect pad k//2, conv with stride)."""
    batch, _, height, width = input_shape
    out: list[tuple[ConvStep, int]] = []
    for step in steps:
        for part in step.steps if isinstance(step, ResidualSteps) else (step,):
            height, width = part.output_size(height, width)
            out.append((part, batch * int(part.weight.shape[0]) * height * width))
    return out


def steps_estimate(steps: Sequence[Step], input_shape: tuple[int, ...]) -> "Estimate":
    """A fused pass's cost from its steps' geometry alone (no shape pass): the total that
    `Tracker.begin_steps` sets when the pass starts, known before it."""
    planned = step_elements(steps, input_shape)
    return Estimate(sum(step_rate(step) * count for step, count in planned), {})


def fused_forward(network: nn.Module) -> Any:
    """The network's fused forward (backend.perf.fused.FusedForward, kept as `_perf_fused` also
    when the memory guard wraps it) if one is installed: the object that reports its steps to
    `observers`."""
    forward = network.__dict__.get("_perf_fused")
    return forward if isinstance(getattr(forward, "observers", None), list) else None


def output_elements(network: nn.Module, input_shape: tuple[int, ...]) -> dict[int, int]:
    """Output elements of every reporting layer (by id) for an input of `input_shape`: from the
    layers' geometry (perf/shapes.py) where it describes the network, else from one pass on
    meta tensors (no memory, no arithmetic; other forward hooks stay silent meanwhile)."""
    cache = network.__dict__.setdefault(COUNTS_ATTR, {})
    if tuple(input_shape) in cache:
        return cache[tuple(input_shape)]
    counts: dict[int, int] = {}
    calls = shapes.walk(network, input_shape)
    if calls is not None:                    # the layers' geometry: no meta pass needed
        for call in calls:
            if isinstance(call.module, WORK):
                counts[id(call.module)] = counts.get(id(call.module), 0) \
                    + shapes.nbytes(call.output_shape, 1)
        cache[tuple(input_shape)] = counts
        return counts

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        counts[id(module)] = counts.get(id(module), 0) + output.numel()

    shapes.meta_pass(network, input_shape,
                     [layer.register_forward_hook(record) for layer in work_layers(network)])
    cache[tuple(input_shape)] = counts
    return counts


@dataclass(frozen=True)
class Estimate:
    """The cost of one pass in (measured or modelled) nanoseconds, and the per-layer rates it
    was computed with: progress uses the same rates, even when a pass of the same layers
    (another style) measures new ones meanwhile."""

    total_ns: float
    rates: dict[int, float]


_WARM: list[bool] = []


def warm_meta() -> None:
    """Run a tiny network of every kind of layer on meta tensors once per process. The first
    meta pass imports PyTorch's shape machinery (seconds on a busy CPU); done while a model
    loads, that time is part of "loading model", not a stall before the first layer's progress."""
    if _WARM:
        return
    probe = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4),
                          nn.BatchNorm2d(4).eval(), nn.ReLU(), nn.LeakyReLU(0.2),
                          nn.MaxPool2d(2, ceil_mode=True), nn.ConvTranspose2d(4, 4, 3, 2, 1, 1),
                          nn.Upsample(scale_factor=2), nn.Dropout(0.5), nn.Tanh())
    estimate(probe, (1, 3, 16, 16))
    _WARM.append(True)


def estimate(network: nn.Module, input_shape: tuple[int, ...]) -> Estimate:
    """The pass's cost from a shape-only run; for a network with the fused kernel installed
    its convolutions' fused rates where measured (the kernel's begin_steps refines the total
    once the pass starts). A network without convolution modules of its own costs nothing
    here (CIN: its chain, built per call, is what gets tracked)."""
    layers = work_layers(network)
    if not layers:
        return Estimate(0.0, {})
    counts = output_elements(network, input_shape)
    fused = fused_forward(network) is not None
    rates = {id(layer): rate(layer, fused) for layer in layers}
    return Estimate(sum(r * counts.get(key, 0) for key, r in rates.items()), rates)


class Tracker:
    """Turns convolution outputs into progress between `start` and `end` of the engine's work."""

    def __init__(self, ctx: Any, start: float, end: float, text: str, cost: Estimate) -> None:
        self.ctx, self.start, self.end, self.text = ctx, start, end, text
        self.total = max(cost.total_ns, 1e-9)
        self.rates = cost.rates
        self.done = 0.0
        self.last = time.perf_counter()
        self.seconds: dict[int, float] = {}
        self.elements: dict[int, int] = {}
        self.modules: dict[int, Any] = {}              # hooked layers' rate holders
        self.fused: dict[int, torch.Tensor] = {}       # fused steps' weights
        self.step_rates: dict[int, float] = {}

    def after(self, module: nn.Module, inputs: Any, output: Any) -> None:
        """A reporting layer's forward hook."""
        if not isinstance(output, torch.Tensor) or output.device.type == "meta":
            return
        self.modules[id(module)] = _holder(module)
        self._count(id(module), self.rates.get(id(module), 0.0), output)

    def begin_steps(self, steps: Sequence[Step], input_shape: tuple[int, ...]) -> None:
        """The fused runner is about to run these steps: they are the pass."""
        planned = step_elements(steps, input_shape)
        self.step_rates = {id(step.weight): step_rate(step) for step, _ in planned}
        self.total = max(steps_estimate(steps, input_shape).total_ns, 1e-9)
        self.done = 0.0
        self.last = time.perf_counter()

    def after_step(self, step: ConvStep, output: torch.Tensor) -> None:
        """The fused runner finished a step (its raw output)."""
        key = id(step.weight)
        self.fused[key] = step.weight
        self._count(key, self.step_rates.get(key, 0.0), output)

    def _count(self, key: int, ns_per_element: float, output: torch.Tensor) -> None:
        if output.device.type == "cuda":      # kernels run asynchronously: wait for this one,
            torch.cuda.synchronize(output.device)   # or the bar would run ahead of the GPU
        elif output.device.type == "mps":
            torch.mps.synchronize()
        now = time.perf_counter()
        count = output.numel()
        self.seconds[key] = self.seconds.get(key, 0.0) + now - self.last
        self.elements[key] = self.elements.get(key, 0) + count
        self.done += ns_per_element * count
        fraction = min(1.0, self.done / self.total)
        self.ctx.step(self.start + (self.end - self.start) * fraction, self.text)
        self.last = time.perf_counter()     # progress reporting is not the layer's work

    def learn(self) -> None:
        """Keep what this run measured on the weights (the next job is weighted by it). Seconds
        and elements are summed, older runs decaying, so a large pass outweighs a small one,
        whose time is mostly fixed per-call costs."""
        for holders, attr in ((self.modules, RATE_ATTR), (self.fused, FUSED_RATE_ATTR)):
            for key, weight in holders.items():
                seconds, elements = getattr(weight, attr, None) or (0.0, 0)
                setattr(weight, attr, (DECAY * seconds + self.seconds[key],
                                       DECAY * elements + self.elements[key]))


@contextmanager
def tracked(network: nn.Module, ctx: Any, start: float, end: float, text: str,
            input_shape: tuple[int, ...], cost: Optional[Estimate] = None,
            fused_on: Optional[nn.Module] = None) -> Iterator[Tracker]:
    """Report progress (and honour cancellation, through ctx.step) after every convolution of
    `network`, or every step of its fused kernel, while the body runs it on an input of
    `input_shape`. `fused_on`: the module whose forward may be the fused kernel, when that is
    not `network` itself (CIN: the model, while `network` is its chain)."""
    tracker = Tracker(ctx, start, end, text, cost or estimate(network, tuple(input_shape)))
    handles = [layer.register_forward_hook(tracker.after) for layer in work_layers(network)]
    runner = fused_forward(fused_on if fused_on is not None else network)
    if runner is not None:
        runner.observers.append(tracker)
    try:
        yield tracker
        tracker.learn()
    finally:
        if runner is not None:
            runner.observers.remove(tracker)
        for handle in handles:
            handle.remove()


class Monotonic:
    """A progress callback that never goes back (an out-of-memory retry in tiles runs the layers
    again) and stays within 0..1."""

    def __init__(self, report: Any) -> None:
        self.report = report
        self.high = 0.0

    def __call__(self, fraction: float, text: str) -> None:
        self.high = min(1.0, max(self.high, float(fraction)))
        self.report(self.high, text)


class Plan:
    """The network passes of one engine run, each given the share of the bar between `start`
    and `end` that its cost is of the whole run's (so a cached style, which costs nothing, takes
    no room, and a decoder at full size takes what it really takes)."""

    def __init__(self, ctx: Any, start: float = 0.0, end: float = 1.0) -> None:
        self.ctx, self.start, self.end = ctx, start, end
        self.passes: dict[str, tuple[nn.Module, tuple[int, ...], Estimate]] = {}

    def add(self, name: str, network: nn.Module, input_shape: tuple[int, ...]) -> None:
        shape = tuple(input_shape)
        self.passes[name] = (network, shape, estimate(network, shape))

    def span(self, name: str) -> tuple[float, float]:
        total = sum(cost.total_ns for _, _, cost in self.passes.values()) or 1.0
        before = 0.0
        for key, (_, _, cost) in self.passes.items():
            if key == name:
                width = self.end - self.start
                return (self.start + width * before / total,
                        self.start + width * (before + cost.total_ns) / total)
            before += cost.total_ns
        raise KeyError(name)

    @contextmanager
    def run(self, name: str, text: str) -> Iterator[Tracker]:
        """Track the pass `name` while the body runs it."""
        network, shape, cost = self.passes[name]
        start, end = self.span(name)
        self.ctx.step(start, text)
        with tracked(network, self.ctx, start, end, text, shape, cost) as tracker:
            yield tracker
