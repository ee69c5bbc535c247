"""Fuzz a real daemon over its real socket: malformed messages and valid ones with extreme values.

Not part of the test run (it takes a few minutes); its output is recorded in
bench/results/fuzz-daemon.md. It starts `python -m backend serve` with random-weight models,
sends --messages messages from several DEALER sockets (seeded, so a finding reproduces), and
checks every answer:

- every message with a readable request id gets exactly one final answer (result or error)
  carrying that id; every unreadable one exactly one error with id "";
- no error is `internal` (a bug);
- afterwards the daemon still runs, answers status, and a real job gives the same bytes as
  before the fuzzing; its resident memory before and after is printed.

    python bench/fuzz_daemon.py [--messages 12000] [--seed 16] [--out FILE]

Exit status 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import zmq  # noqa: E402

import backend  # noqa: E402,F401
from backend.daemon.images import array_to_frame, frame_to_array  # noqa: E402
from stclient import PROTOCOL_VERSION  # noqa: E402
from stclient.protocol import Error, Result, decode_reply  # noqa: E402

from tests.helpers.batch_folders import make_plain_folder  # noqa: E402
from tests.helpers.checkpoints import make_models_dir  # noqa: E402
from tests.helpers.daemon import start_daemon  # noqa: E402

SOCKETS = 6
MAX_PIXELS = 1_000_000
HUGE_INT = 10 ** 400                       # a JSON integer no float can hold
FINAL = (Result, Error)


# ------------------------------------------------------------------------------- messages

def image(w: int = 4, h: int = 3, c: int = 3, dtype: str = "uint8") -> dict:
    return {"width": w, "height": h, "channels": c, "dtype": dtype}


def nbytes(desc: dict) -> int:
    return desc["width"] * desc["height"] * desc["channels"] * {"uint8": 1, "uint16": 2,
                                                                 "float32": 4}[desc["dtype"]]


def encode(header: Any) -> bytes:
    return json.dumps(header, allow_nan=True).encode("utf-8", "surrogatepass")


@dataclass
class Sandbox:
    """Folders the batch messages may name; outputs only ever go below `out`."""

    root: Path
    inp: Path = field(init=False)
    out: Path = field(init=False)
    style: Path = field(init=False)

    def __post_init__(self) -> None:
        self.inp = self.root / "in"
        self.out = self.root / "out"
        make_plain_folder(self.inp, 2, 16)
        from backend import imageio
        self.style = self.root / "style.png"
        imageio.write_image(self.style, np.full((16, 16, 3), 128, np.uint8))


class Generator:
    """One message at a time: (frames, label). Ids are f<index> where the header has one."""

    def __init__(self, rng: random.Random, sandbox: Sandbox) -> None:
        self.rng = rng
        self.box = sandbox

    def stylize(self, rid: str, engine: str = "cyclegan", content: Optional[dict] = None,
                **fields: Any) -> dict:
        header = {"v": PROTOCOL_VERSION, "id": rid, "op": "stylize", "engine": engine,
                  "content": content or image(8, 8)}
        header.update(fields)
        return header

    def with_pixels(self, header: dict) -> list[bytes]:
        descs = [header["content"], *header.get("styles", [])]
        if header.get("mask"):
            descs.append(header["mask"])
        return [encode(header), *(bytes(nbytes(d)) for d in descs)]

    def make(self, index: int) -> tuple[list[bytes], str]:
        rid = f"f{index}"
        kinds = [self.garbage, self.envelope, self.fields, self.frames, self.images,
                 self.options, self.numbers, self.sizes, self.paths, self.batch, self.sample,
                 self.small_ops, self.valid_job]
        kind = self.rng.choice(kinds)
        return kind(rid), kind.__name__

    # ---- malformed structure

    def garbage(self, rid: str) -> list[bytes]:
        r = self.rng
        choice = r.randrange(6)
        if choice == 0:
            return [bytes(r.getrandbits(8) for _ in range(r.randrange(1, 80)))]
        if choice == 1:
            text = encode(self.stylize(rid))
            return [text[:r.randrange(1, len(text) - 1)]]
        if choice == 2:
            return [encode(r.choice([[], 1, "x", None, True, [self.stylize(rid)]]))]
        if choice == 3:
            return [b"[" * 50000 + b"]" * 50000]
        if choice == 4:
            return [b"\xff\xfe" + encode(self.stylize(rid))]
        return [encode({"v": 1, "id": rid, "op": "status", "x": float("nan")})]

    def envelope(self, rid: str) -> list[bytes]:
        r = self.rng
        header: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": rid, "op": "status"}
        choice = r.randrange(6)
        if choice == 0:
            header["v"] = r.choice([0, 2, "1", None, 1.5, HUGE_INT, -1])
        elif choice == 1:
            header["op"] = r.choice(["", "eval", "STATUS", "pickle", 7, None, "__init__"])
        elif choice == 2:
            header["id"] = r.choice([7, None, ["x"], {"a": 1}, "x" * 129, "x" * 100000])
        elif choice == 3:
            header["id"] = rid + "\ud800"                    # a lone surrogate
        elif choice == 4:
            header["token"] = r.choice([5, ["t"], "t" * 100000, "\udfff"])
        else:
            del header["op"]
        return [encode(header)]

    def fields(self, rid: str) -> list[bytes]:
        r = self.rng
        header = self.stylize(rid)
        key = r.choice(["engine", "model", "options", "styles", "style_paths", "mask",
                        "deadline_s", "content"])
        header[key] = r.choice([5, [1], {"a": 1}, "x", True, -3.0, None, [None], "",
                                HUGE_INT, [HUGE_INT], {"width": HUGE_INT}])
        return self.with_pixels_safe(header)

    def with_pixels_safe(self, header: dict) -> list[bytes]:
        try:
            return self.with_pixels(header)
        except (KeyError, TypeError, AttributeError):
            return [encode(header), bytes(8 * 8 * 3)]

    def frames(self, rid: str) -> list[bytes]:
        r = self.rng
        header = self.stylize(rid)
        body = bytes(8 * 8 * 3)
        choice = r.randrange(4)
        if choice == 0:
            return [encode(header)]                                  # missing frame
        if choice == 1:
            return [encode(header), body, *[b"x"] * r.randrange(1, 4)]   # extra frames
        if choice == 2:
            return [encode(header), body, *[b""] * r.randrange(18, 40)]  # far too many
        return [encode(header), bytes(len(body) + r.choice([-1, 1, 1000]))]

    def images(self, rid: str) -> list[bytes]:
        r = self.rng
        bad = r.choice([image(c=0), image(c=9), image(w=-1), image(w=0), image(dtype="float64"),
                        image(dtype=None), {"width": 4}, [4, 3, 3], image(w=4.0),
                        image(w=HUGE_INT), image(10 ** 6, 10 ** 6), image(2 ** 31, 2),
                        {**image(), "extra": 1}])
        header = self.stylize(rid, content=bad)
        return [encode(header), bytes(36)]

    # ---- valid structure, extreme values

    def options(self, rid: str) -> list[bytes]:
        r = self.rng
        engine = r.choice(["cyclegan", "pix2pix", "adain", "mixgan", "deepdream"])
        name = r.choice(["working_size", "alpha", "style_size", "seed", "norm", "style_weights",
                         "preserve_color", "color_output", "mask_mode", "nope"])
        value = r.choice([-5, 10 ** 9, "big", None, [], {}, True, HUGE_INT, -HUGE_INT, 1e308,
                          -1e308, 1e-308, [1e308] * 3, [HUGE_INT], ["x"], [0.0] * 10000,
                          "\ud800"])
        header = self.stylize(rid, engine=engine, model=None, options={name: value})
        if engine == "adain":
            header["styles"] = [image(8, 8)]
        return self.with_pixels(header)

    def numbers(self, rid: str) -> list[bytes]:
        r = self.rng
        value = r.choice([HUGE_INT, 1e308, -1.0, 0, 1e-300, "soon", -HUGE_INT, 2 ** 63, 1e-9])
        op = r.choice(["stylize", "batch", "sample"])
        if op == "stylize":
            return self.with_pixels(self.stylize(rid, deadline_s=value))
        if op == "sample":
            return [encode({"v": 1, "id": rid, "op": "sample", "deadline_s": value,
                            "count": r.choice([1, HUGE_INT, 2 ** 63, 1e308, 256]),
                            "seed": r.choice([0, HUGE_INT, -1, 2 ** 31])})]
        spec = {"input_dir": str(self.box.inp), "output_dir": str(self.box.out / rid),
                "engine": "cyclegan", "quality": r.choice([95, HUGE_INT, 1e308]),
                "max_pixels": r.choice([None, HUGE_INT, 2 ** 63, 1])}
        return [encode({"v": 1, "id": rid, "op": "batch", "spec": spec, "deadline_s": value})]

    def sizes(self, rid: str) -> list[bytes]:
        r = self.rng
        choice = r.randrange(4)
        if choice == 0:                              # 2x2 content asking for a 16384 network
            header = self.stylize(rid, engine=r.choice(["cyclegan", "pix2pix", "mixgan"]),
                                  content=image(2, 2), options={"working_size": 16384})
        elif choice == 1:                            # 2x2 style scaled to 16384
            header = self.stylize(rid, engine="adain", content=image(8, 8),
                                  styles=[image(2, 2)], options={"style_size": 16384})
        elif choice == 2:                            # style file scaled to 16384
            header = self.stylize(rid, engine="adain", content=image(8, 8),
                                  style_paths=[str(self.box.style)],
                                  options={"style_size": r.choice([16384, 12000])})
        else:
            return [encode({"v": 1, "id": rid, "op": "sample", "count": r.choice([1, 256]),
                            "options": {"working_size": r.choice([16384, 8192, 4096])}})]
        return self.with_pixels(header)

    def paths(self, rid: str) -> list[bytes]:
        r = self.rng
        path = r.choice(["relative.png", "/proc/kmsg", "/dev/zero", "/dev/stdin", "/no/such",
                         "/tmp", "/" + "a" * 5000, "/x\ud800.png", "/x\u0000.png", "",
                         "/proc/self/mem", "/etc/shadow", str(self.box.style) + "/.."])
        header = self.stylize(rid, engine="adain", style_paths=[path])
        return self.with_pixels(header)

    def batch(self, rid: str) -> list[bytes]:
        r = self.rng
        out = str(self.box.out / rid)
        spec: dict[str, Any] = {"input_dir": str(self.box.inp), "output_dir": out,
                                "engine": "cyclegan"}
        key, value = r.choice([
            ("report", ".bashrc"), ("report", "../x.json"), ("report", "a/b.json"),
            ("report", "r.sh"), ("report", "\ud800.json"), ("report", "x" * 300 + ".json"),
            ("files", ["../../etc/passwd"]), ("files", ["a" * 5000]), ("files", [HUGE_INT]),
            ("patterns", ["*" * 10000]), ("patterns", ["[" * 100]), ("format", "exe"),
            ("input_dir", "/proc"), ("input_dir", "relative"), ("input_dir", "/x\ud800"),
            ("output_dir", str(self.box.inp)), ("output_dir", str(self.box.inp / "sub")),
            ("styles", ["/proc/kmsg"]), ("styles", ["/dev/zero"]), ("checkpoints", {"g": 5}),
            ("checkpoints", {"generator": "/dev/zero"}), ("engine", "nope"), ("model", ""),
            ("recursive", "yes"), ("overwrite", 1), ("unknown_field", 1), ("device", 7),
            ("options", {"working_size": 16384}), ("options", {"working_size": HUGE_INT}),
        ])
        spec[key] = value
        if key == "input_dir" and value == "/proc":
            spec["recursive"] = False
        return [encode({"v": 1, "id": rid, "op": "batch", "spec": spec})]

    def sample(self, rid: str) -> list[bytes]:
        r = self.rng
        header = {"v": 1, "id": rid, "op": "sample",
                  "model": r.choice([None, "nope", "style_monet", "\ud800", "x" * 10000]),
                  "count": r.choice([0, -1, 10 ** 6, "3", 1, 257]),
                  "options": r.choice([{}, {"seed": -1}, {"working_size": -1}, {"x": 1}, []])}
        return [encode(header)]

    def small_ops(self, rid: str) -> list[bytes]:
        r = self.rng
        op = r.choice(["status", "models", "cancel", "cancel", "shutdown_token"])
        if op == "cancel":
            target = r.choice([f"f{r.randrange(100000)}", "", HUGE_INT, None, "x" * 1000,
                               "\ud800"])
            return [encode({"v": 1, "id": rid, "op": "cancel", "target": target})]
        if op == "shutdown_token":      # a shutdown that must fail validation, never stop it
            return [encode({"v": 1, "id": rid, "op": "shutdown", "token": 5})]
        return [encode({"v": 1, "id": rid, "op": op})]

    def valid_job(self, rid: str) -> list[bytes]:
        r = self.rng
        side = r.choice([2, 8, 16, 17])
        content = image(side, side, r.choice([1, 2, 3, 4]),
                        r.choice(["uint8", "uint16", "float32"]))
        header = self.stylize(rid, engine="cyclegan", content=content,
                              options={"working_size": r.choice([0, 8, 16, 32])},
                              deadline_s=r.choice([None, 30.0, 1e-6]))
        return self.with_pixels(header)


def expected_id(frames: list[bytes]) -> str:
    """The id an answer must carry: the header's, when it is a readable one, else ""."""
    try:
        header = json.loads(frames[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ""
    if not isinstance(header, dict):
        return ""
    rid = header.get("id")
    if not isinstance(rid, str) or len(rid) > 128:
        return ""
    try:
        rid.encode("utf-8")
    except UnicodeEncodeError:
        return ""
    return rid


# ------------------------------------------------------------------------------- the run

@dataclass
class Tally:
    sent: int = 0
    by_kind: collections.Counter = field(default_factory=collections.Counter)
    finals: dict[str, list[Any]] = field(default_factory=lambda: collections.defaultdict(list))
    anonymous: int = 0                   # messages whose answer must carry id ""
    anonymous_errors: int = 0
    codes: collections.Counter = field(default_factory=collections.Counter)
    results: int = 0
    internal: list[str] = field(default_factory=list)
    wrong_ids: list[str] = field(default_factory=list)


def receive(sock: zmq.Socket, tally: Tally) -> None:
    while sock.poll(0):
        reply = decode_reply(sock.recv_multipart())
        if not isinstance(reply, FINAL):
            continue
        if isinstance(reply, Error):
            tally.codes[reply.code] += 1
            if reply.code == "internal":
                tally.internal.append(f"{reply.id}: {reply.message}")
        else:
            tally.results += 1
        if reply.id == "":
            tally.anonymous_errors += 1
        else:
            tally.finals[reply.id].append(reply)


def run_fuzz(endpoint: str, messages: int, seed: int, sandbox: Sandbox) -> Tally:
    rng = random.Random(seed)
    generator = Generator(rng, sandbox)
    context = zmq.Context.instance()
    socks = [context.socket(zmq.DEALER) for _ in range(SOCKETS)]
    for sock in socks:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(endpoint)
    tally = Tally()
    expected: dict[str, str] = {}
    heartbeat = encode({"v": 1, "id": "", "op": "heartbeat"})
    next_beat = time.monotonic()
    try:
        for index in range(messages):
            frames, kind = generator.make(index)
            rid = expected_id(frames)
            if rid:
                expected[rid] = kind
            else:
                tally.anonymous += 1
            sock = socks[index % SOCKETS]
            sock.send_multipart(frames)
            tally.sent += 1
            tally.by_kind[kind] += 1
            if index % 20 == 19:
                for s in socks:
                    receive(s, tally)
            if time.monotonic() >= next_beat:       # raw sockets must look alive, as clients do
                for s in socks:
                    s.send_multipart([heartbeat])
                next_beat = time.monotonic() + 0.5
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for s in socks:
                receive(s, tally)
            if len(tally.finals) >= len(expected) and tally.anonymous_errors >= tally.anonymous:
                break
            if time.monotonic() >= next_beat:
                for s in socks:
                    s.send_multipart([heartbeat])
                next_beat = time.monotonic() + 0.5
            time.sleep(0.01)
        time.sleep(1.0)
        for s in socks:
            receive(s, tally)
    finally:
        for sock in socks:
            sock.close(0)
    for rid, kind in expected.items():
        answers = tally.finals.get(rid, [])
        if len(answers) != 1:
            tally.wrong_ids.append(f"{rid} ({kind}): {len(answers)} final answers")
    for rid in tally.finals:
        if rid not in expected:
            tally.wrong_ids.append(f"{rid}: answered but not a readable id of ours")
    return tally


def warm_up(daemon, sandbox: Sandbox) -> None:
    """One job per engine first, so every model the fuzzing may load is loaded before the
    'before' memory is taken."""
    rng = np.random.default_rng(7)
    content = array_to_frame(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    with daemon.client(timeout=120) as client:
        client.stylize(content, "cyclegan", None, {"working_size": 32})
        client.stylize(content, "pix2pix", None)
        client.stylize(content, "adain", None, styles=[content],
                       style_paths=[str(sandbox.style)])
        client.stylize(content, "mixgan", None)
        client.sample(count=2)


def real_job(daemon) -> bytes:
    rng = np.random.default_rng(2026)
    content = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    with daemon.client(timeout=60) as client:
        frame, _ = client.stylize(array_to_frame(content), "cyclegan", "style_monet",
                                  {"working_size": 32})
    return frame_to_array(frame).tobytes()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", type=Path, help="also write the report (Markdown) here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="st-fuzz-"))
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    try:
        models = make_models_dir(work / "models")
        sandbox = Sandbox(work / "box")
        started = time.monotonic()
        with start_daemon(models, extra_args=["--max-pixels", str(MAX_PIXELS),
                                              "--job-timeout", "120"]) as daemon:
            warm_up(daemon, sandbox)
            before_bytes = real_job(daemon)
            rss_before = daemon.rss()
            tally = run_fuzz(daemon.endpoint, args.messages, args.seed, sandbox)
            alive = daemon.process.poll() is None
            with daemon.client(timeout=30) as client:
                status = client.status()
            rss_after = daemon.rss()
            after_bytes = real_job(daemon)
            log = daemon.log()
        elapsed = time.monotonic() - started
        identical = before_bytes == after_bytes
        outside = [p for p in sandbox.out.rglob("*")] if sandbox.out.exists() else []
        say("# Daemon fuzzing")
        say()
        say(f"Command: `python bench/fuzz_daemon.py --messages {args.messages} --seed "
            f"{args.seed}`  ")
        say(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, {platform.system()}; {elapsed:.0f} s in all. Daemon: "
            f"`serve --max-pixels {MAX_PIXELS} --job-timeout 120 --threads 1` on its private ipc "
            f"socket, random-weight models; {SOCKETS} DEALER sockets.")
        say()
        say("| check | value |")
        say("|---|---|")
        say(f"| messages sent | {tally.sent} |")
        say(f"| results | {tally.results} |")
        say(f"| errors | {sum(tally.codes.values())} |")
        for code, count in sorted(tally.codes.items()):
            say(f"| errors `{code}` | {count} |")
        say(f"| internal errors (must be 0) | {len(tally.internal)} |")
        say(f"| messages without exactly one final answer carrying their readable id "
            f"(must be 0) | {len(tally.wrong_ids)} |")
        say(f"| unreadable messages / errors with id \"\" | {tally.anonymous} / "
            f"{tally.anonymous_errors} |")
        say(f"| daemon alive, status OK | {alive and bool(status.get('ready'))} |")
        say(f"| daemon RSS before / after | {rss_before / 2**20:.0f} MiB / "
            f"{rss_after / 2**20:.0f} MiB |")
        say(f"| real job bit-identical before and after | {identical} |")
        say(f"| files written by the batch messages (all below the sandbox's out/) | "
            f"{len([p for p in outside if p.is_file()])} |")
        say()
        say("Messages by kind: " + ", ".join(f"{kind} {count}" for kind, count in
                                             sorted(tally.by_kind.items())) + ".")
        for title, items in (("Internal errors", tally.internal),
                             ("Answer problems", tally.wrong_ids)):
            if items:
                say()
                say(f"{title} (first 20):")
                for item in items[:20]:
                    say(f"- {item[:300]}")
        if "Traceback" in log:
            say()
            say("The daemon log has a traceback:")
            say("```")
            say(log[log.index("Traceback"):][:3000])
            say("```")
        ok = (not tally.internal and not tally.wrong_ids and alive and identical
              and tally.anonymous_errors == tally.anonymous and bool(status.get("ready")))
        say()
        say(f"Result: {'all checks hold' if ok else 'FAILED'}.")
        if args.out:
            args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
