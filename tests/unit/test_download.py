"""Model downloads over a real HTTP server on 127.0.0.1: resume, retry, checksum, structural
validation, malicious pickles, mirrors, and what an offline user is told."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
from pathlib import Path

import pytest
import torch

from backend.modelstore import install_models, verify_models
from backend.modelstore.download import DownloadError, RetryPolicy, fetch_url
from backend.modelstore.validate import validate_checkpoint
from stclient.errors import BAD_CHECKPOINT, StyleTransferError
from tests.helpers.checkpoints import make_cyclegan_file
from tests.helpers.fileserver import FileServer
from tests.helpers.manifests import generator_entry, write_manifest

FAST = RetryPolicy(attempts=3, backoff=0.01, timeout=10)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, bytes]:
    """Real checkpoints in the released CycleGAN layout (random weights), as bytes."""
    folder = tmp_path_factory.mktemp("weights")
    six = make_cyclegan_file(folder / "six.pth", n_blocks=6, seed=3)
    nine = make_cyclegan_file(folder / "nine.pth", n_blocks=9, seed=4)
    return {"resnet_6blocks": Path(six).read_bytes(), "resnet_9blocks": Path(nine).read_bytes()}


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


def _install(tmp_path: Path, models: list[dict], spec: str, **kwargs):
    manifest = write_manifest(tmp_path / "manifest.json", models)
    models_dir = tmp_path / "models"
    report = install_models(spec, models_dir=models_dir, manifest_path=manifest,
                            policy=kwargs.pop("policy", FAST), progress=False, **kwargs)
    return report, models_dir


def _leftovers(folder: Path) -> list[str]:
    """Files a failed install might leave behind (hidden bookkeeping files aside)."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name not in (".verified.json", ".detected.json"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------ resume / retry

def test_resume_after_dropped_connection(tmp_path, server, weights):
    data = weights["resnet_6blocks"]
    cut = len(data) // 3
    url = server.add("/cg/tiny.pth", data, drop_after=[cut])
    report, models_dir = _install(tmp_path, [generator_entry("tiny", url, sha=None)], "tiny")
    assert report.ok, report.failed
    installed = models_dir / "tiny" / "tiny.pth"
    assert installed.read_bytes() == data
    requests = server.requests_for("/cg/tiny.pth")
    assert [r.status for r in requests] == [200, 206]
    assert requests[1].range == f"bytes={cut}-"          # asked only for the rest
    assert not list((models_dir / "tiny").glob("*.part"))


def test_resume_across_runs_keeps_the_partial_file(tmp_path, server, weights):
    data = weights["resnet_6blocks"]
    url = server.add("/tiny.pth", data, drop_after=[1000, 5_000_000])
    models = [generator_entry("tiny", url, sha=sha256_bytes(data))]
    once = RetryPolicy(attempts=1, backoff=0, timeout=10)
    report, models_dir = _install(tmp_path, models, "tiny", policy=once)
    assert not report.ok and "tiny" in report.failed
    part = models_dir / "tiny" / ".tiny.pth.part"
    assert part.stat().st_size == 1000                     # kept for the next run
    report, _ = _install(tmp_path, models, "tiny", policy=once)   # second drop, at +5 MB
    assert part.stat().st_size == 1000 + 5_000_000
    report, _ = _install(tmp_path, models, "tiny", policy=once)
    assert report.installed == ["tiny"]
    assert (models_dir / "tiny" / "tiny.pth").read_bytes() == data
    assert [r.range for r in server.requests_for("/tiny.pth")] == [
        None, "bytes=1000-", "bytes=5001000-"]
    assert not part.exists()


def test_server_that_ignores_range_restarts_cleanly(tmp_path, server, weights):
    data = weights["resnet_6blocks"]
    part = tmp_path / "x.part"
    part.write_bytes(b"garbage that must not stay in front of the real bytes")
    url = server.add("/x.pth", data, ignore_range=True)
    fetch_url(url, part, policy=FAST, progress=False)
    assert part.read_bytes() == data


def test_transient_server_errors_are_retried(tmp_path, server, weights):
    data = weights["resnet_6blocks"]
    url = server.add("/busy.pth", data, failures=2)
    fetch_url(url, tmp_path / "busy.part", policy=FAST, progress=False)
    assert (tmp_path / "busy.part").read_bytes() == data
    assert [r.status for r in server.requests_for("/busy.pth")] == [503, 503, 200]


def test_retries_are_bounded(tmp_path, server):
    url = server.add("/down.pth", b"x", failures=10)
    with pytest.raises(DownloadError) as caught:
        fetch_url(url, tmp_path / "down.part", policy=FAST, progress=False)
    assert "after 3 attempts" in caught.value.message and "503" in caught.value.message
    assert len(server.requests_for("/down.pth")) == 3


# ------------------------------------------------------------------------------ the gate

def test_checksum_mismatch_is_rejected_and_nothing_is_left(tmp_path, server, weights):
    data = weights["resnet_6blocks"]
    url = server.add("/tiny.pth", data)
    wrong = sha256_bytes(b"some other file")
    report, models_dir = _install(tmp_path, [generator_entry("tiny", url, sha=wrong)], "tiny")
    assert not report.ok
    message = report.failed["tiny"]
    assert "checksum" in message and wrong in message and sha256_bytes(data) in message
    assert _leftovers(models_dir) == []                   # no file, no .part, no empty folder


def test_checksum_match_is_accepted(tmp_path, server, weights):
    data = weights["resnet_6blocks"]
    url = server.add("/tiny.pth", data)
    report, models_dir = _install(
        tmp_path, [generator_entry("tiny", url, sha=sha256_bytes(data))], "tiny")
    assert report.installed == ["tiny"]


def test_wrong_architecture_is_rejected_with_a_clear_message(tmp_path, server, weights):
    url = server.add("/nine.pth", weights["resnet_9blocks"])
    report, models_dir = _install(
        tmp_path, [generator_entry("tiny", url, arch="resnet_6blocks")], "tiny")
    message = report.failed["tiny"]
    assert "resnet_9blocks" in message and "resnet_6blocks" in message
    assert "rejected" in message
    assert _leftovers(models_dir) == []


def test_file_that_is_not_the_expected_network_is_rejected(tmp_path, server):
    buffer = tmp_path / "odd.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, buffer)
    url = server.add("/odd.pth", buffer.read_bytes())
    report, models_dir = _install(tmp_path, [generator_entry("odd", url)], "odd")
    message = report.failed["odd"]
    assert "does not match a known cyclegan layout" in message
    assert _leftovers(models_dir) == []


def test_html_error_page_instead_of_weights_is_rejected(tmp_path, server):
    url = server.add("/page.pth", b"<html><body>Please log in</body></html>")
    report, models_dir = _install(tmp_path, [generator_entry("page", url)], "page")
    assert "not a PyTorch checkpoint at all (it starts with b'<html>" in report.failed["page"]
    assert _leftovers(models_dir) == []


class _Payload:
    """Unpickling this calls os.mkdir(marker): what a booby-trapped checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path, server, container):
    marker = tmp_path / f"pwned-{container.replace(' ', '_')}"
    evil = tmp_path / "evil.pth"
    if container == "torch.save":
        torch.save({"model.1.weight": torch.zeros(1), "x": _Payload(marker)}, evil)
    else:   # a legacy (non-zip) pickle file
        evil.write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=2))
    with pytest.raises(StyleTransferError) as caught:
        validate_checkpoint(evil, "cyclegan", "generator")
    assert caught.value.code == BAD_CHECKPOINT
    assert "not a plain PyTorch weights file" in caught.value.message
    assert "posix.mkdir" in caught.value.message            # says what it refused
    assert "weights_only` set to `False`" not in caught.value.message  # never advise unsafe loads
    assert not marker.exists()

    url = server.add("/evil.pth", evil.read_bytes())
    report, models_dir = _install(tmp_path, [generator_entry("evil", url)], "evil")
    assert "evil" in report.failed and "rejected" in report.failed["evil"]
    assert not marker.exists()
    assert _leftovers(models_dir) == []

    # the file really is dangerous: an unsafe load runs the payload (so this test can fail)
    if container == "torch.save":
        torch.load(evil, weights_only=False)
    else:
        pickle.loads(evil.read_bytes())
    assert marker.exists()


# ------------------------------------------------------------------------------ mirrors

def test_mirror_folder_install_in_every_layout(tmp_path, weights):
    data = weights["resnet_6blocks"]
    mirror = tmp_path / "mirror"
    (mirror / "by_name").mkdir(parents=True)
    (mirror / "by_name" / "by_name.pth").write_bytes(data)              # <name>/<file>
    (mirror / "flat.pth").write_bytes(data)                             # <file>
    (mirror / "cyclegan" / "pretrained_models").mkdir(parents=True)
    (mirror / "cyclegan" / "pretrained_models" / "official.pth").write_bytes(data)  # URL path
    dead = f"http://127.0.0.1:{_closed_port()}"
    models = [generator_entry("by_name", f"{dead}/x/by_name.pth"),
              generator_entry("flat", f"{dead}/y/flat.pth"),
              generator_entry("hosted", f"{dead}/cyclegan/pretrained_models/official.pth")]
    report, models_dir = _install(tmp_path, models, "all", mirror=str(mirror))
    assert report.ok, report.failed
    assert sorted(report.installed) == ["by_name", "flat", "hosted"]
    for name in ("by_name", "flat", "hosted"):
        assert (models_dir / name / f"{name}.pth").read_bytes() == data

    before = (models_dir / "flat" / "flat.pth").stat().st_mtime_ns
    report, _ = _install(tmp_path, models, "all", mirror=str(mirror))   # idempotent
    assert report.installed == [] and sorted(report.present) == ["by_name", "flat", "hosted"]
    assert (models_dir / "flat" / "flat.pth").stat().st_mtime_ns == before


def test_mirror_folder_missing_file_says_where_it_looked(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    report, models_dir = _install(
        tmp_path, [generator_entry("gone", "http://example.invalid/gone.pth")], "gone",
        mirror=str(mirror))
    assert str(mirror / "gone.pth") in report.failed["gone"]
    assert [s.model for s in report.manual] == ["gone"]


def test_mirror_base_url(tmp_path, server, weights):
    data = weights["resnet_6blocks"]
    server.add("/mirror/tiny/tiny.pth", data)
    report, models_dir = _install(
        tmp_path, [generator_entry("tiny", "http://example.invalid/official/tiny.pth")], "tiny",
        mirror=server.url("/mirror"))
    assert report.installed == ["tiny"]
    assert (models_dir / "tiny" / "tiny.pth").read_bytes() == data


# ------------------------------------------------------------------------------ offline, by hand

def test_no_network_names_every_file_its_url_and_destination(tmp_path):
    dead = f"http://127.0.0.1:{_closed_port()}"
    models = [generator_entry("one", f"{dead}/one.pth"), generator_entry("two", f"{dead}/two.pth")]
    report, models_dir = _install(tmp_path, models, "one,two")
    assert set(report.failed) == {"one", "two"}
    text = report.manual_instructions(["one", "two"])
    for name in ("one", "two"):
        assert f"{dead}/{name}.pth" in text
        assert str(models_dir / name / f"{name}.pth") in text
    assert "install.py --models one,two" in text


def test_file_placed_by_hand_is_validated_and_accepted(tmp_path, weights):
    dead = f"http://127.0.0.1:{_closed_port()}"
    models_dir = tmp_path / "models"
    (models_dir / "tiny").mkdir(parents=True)
    (models_dir / "tiny" / "tiny.pth").write_bytes(weights["resnet_6blocks"])
    report, _ = _install(tmp_path, [generator_entry("tiny", f"{dead}/tiny.pth")], "tiny")
    assert report.present == ["tiny"] and report.ok
    [result] = verify_models(["tiny"], models_dir=models_dir,
                             manifest_path=tmp_path / "manifest.json")
    assert result.ok and result.message == "resnet_6blocks"


def test_bad_file_placed_by_hand_is_reported_and_kept(tmp_path, weights):
    dead = f"http://127.0.0.1:{_closed_port()}"
    models_dir = tmp_path / "models"
    (models_dir / "tiny").mkdir(parents=True)
    placed = models_dir / "tiny" / "tiny.pth"
    placed.write_bytes(weights["resnet_9blocks"])
    report, _ = _install(tmp_path, [generator_entry("tiny", f"{dead}/tiny.pth")], "tiny")
    assert "is there but is not valid" in report.failed["tiny"]
    assert "--force" in report.failed["tiny"]
    assert placed.read_bytes() == weights["resnet_9blocks"]    # the user's file is not deleted


def test_verify_notices_a_file_that_changed(tmp_path, server, weights):
    url = server.add("/tiny.pth", weights["resnet_6blocks"])
    report, models_dir = _install(tmp_path, [generator_entry("tiny", url)], "tiny")
    assert report.ok
    manifest = tmp_path / "manifest.json"
    assert all(r.ok for r in verify_models(models_dir=models_dir, manifest_path=manifest))
    (models_dir / "tiny" / "tiny.pth").write_bytes(b"corrupted")
    [result] = verify_models(models_dir=models_dir, manifest_path=manifest)
    assert not result.ok and "not a PyTorch checkpoint at all" in result.message


def test_unknown_name_fails_before_downloading(tmp_path, server):
    with pytest.raises(StyleTransferError) as caught:
        _install(tmp_path, [generator_entry("tiny", server.url("/tiny.pth"))], "tiny,nope")
    assert "nope" in caught.value.message and "tiny" in caught.value.message
    assert server.log == []
