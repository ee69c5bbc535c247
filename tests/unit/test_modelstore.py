"""The model registry: the official manifest, installed/missing status, user models dropped into
the models folder, and the errors that tell users what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from backend import PROJECT_ROOT
from backend.modelstore import default_model, get_model, list_models, load_manifest
from backend.modelstore.manifest import parse_manifest
from backend.modelstore.registry import DETECTION_CACHE, ModelRegistry
from stclient.errors import BAD_REQUEST, MODEL_MISSING, UNKNOWN_MODEL, StyleTransferError
from tests.helpers.checkpoints import make_adain_files, make_cyclegan_file
from tests.helpers.manifests import generator_entry, write_manifest

CYCLEGAN_RELEASES = [
    "apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite",
    "horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe",
    "style_vangogh", "sat2map", "map2sat", "cityscapes_photo2label", "cityscapes_label2photo",
    "facades_photo2label", "facades_label2photo", "iphone2dslr_flower"]
PIX2PIX_RELEASES = ["edges2shoes", "sat2map", "map2sat", "facades_label2photo", "day2night"]


# ------------------------------------------------------------------------------ the manifest

def test_manifest_lists_every_official_release():
    manifest = load_manifest(PROJECT_ROOT / "models" / "manifest.json")
    by_name = {entry.name: entry for entry in manifest.entries}

    adain = by_name["adain"]
    assert adain.engine == "adain"
    urls = {f.role: f.url for f in adain.files}
    base = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/"
    assert urls == {"vgg": base + "vgg_normalised.pth", "decoder": base + "decoder.pth"}
    assert {f.role: f.arch for f in adain.files} == {"vgg": "vgg_normalised",
                                                      "decoder": "adain_decoder"}
    for name in CYCLEGAN_RELEASES:
        entry = by_name[name]
        assert (entry.engine, entry.arch) == ("cyclegan", "resnet_9blocks")
        assert entry.files[0].url == ("http://efrosgans.eecs.berkeley.edu/cyclegan/"
                                      f"pretrained_models/{name}.pth")
    for release in PIX2PIX_RELEASES:
        entry = by_name[f"pix2pix_{release}"]
        assert (entry.engine, entry.arch) == ("pix2pix", "unet_256")
        assert entry.files[0].url == ("http://efrosgans.eecs.berkeley.edu/pix2pix/"
                                      f"models-pytorch/{release}.pth")
    starter = by_name["mixgan_glyphs"]
    assert starter.engine == "mixgan" and starter.bundled
    assert starter.files[0].url is None and starter.files[0].path.startswith("starter/")
    for entry in manifest.entries:
        assert entry.display_name and entry.description and entry.license
        for file in entry.files:
            assert file.sha256 is None or len(file.sha256) == 64
    assert {e.name for e in manifest.entries if e.recommended} >= {"adain", "style_monet"}


@pytest.mark.parametrize("mutate, complaint", [
    (lambda m: m["models"].append(dict(m["models"][0])), "listed twice"),
    (lambda m: m["models"][0].update(engine="stylegan"), "unknown engine"),
    (lambda m: m["models"][0]["files"][0].update(role="decoder"), "role"),
    (lambda m: m["models"][0]["files"][0].update(sha256="abc"), "sha256"),
    (lambda m: m["models"][0]["files"][0].update(url=None), "neither a url"),
    (lambda m: m["models"][0]["files"][0].update(filename="../x.pth"), "invalid filename"),
])
def test_inconsistent_manifest_is_refused_with_the_reason(mutate, complaint):
    data = {"models": [generator_entry("one", "http://h/one.pth")]}
    mutate(data)
    with pytest.raises(StyleTransferError) as caught:
        parse_manifest(data, "test manifest")
    assert caught.value.code == BAD_REQUEST and complaint in caught.value.message


# ------------------------------------------------------------------------------ listing

@pytest.fixture
def store(tmp_path):
    """A manifest with three downloadable models and one bundled model, and an empty models dir."""
    starter = tmp_path / "manifest_dir" / "starter"
    starter.mkdir(parents=True)
    models = [
        generator_entry("painter", "http://h/painter.pth", recommended=True),
        generator_entry("other_painter", "http://h/other.pth"),
        generator_entry("edges", "http://h/edges.pth", engine="pix2pix", arch="unet_256"),
        {"name": "starter_mix", "engine": "mixgan", "arch": "conv", "display_name": "Starter",
         "description": "bundled", "license": "ours", "bundled": True, "recommended": True,
         "files": [{"role": "generator", "filename": "mix.pth", "path": "starter/mix.pth",
                    "url": None, "sha256": None}]},
    ]
    manifest = write_manifest(tmp_path / "manifest_dir" / "manifest.json", models)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    return manifest, models_dir


def _by_name(manifest, models_dir):
    return {m.name: m for m in list_models(models_dir, manifest)}


def test_installed_and_missing_status(store):
    manifest, models_dir = store
    make_cyclegan_file(models_dir / "painter" / "painter.pth", n_blocks=6)
    models = _by_name(manifest, models_dir)
    assert models["painter"].installed and models["painter"].source == "manifest"
    assert models["painter"].paths == {"generator": models_dir / "painter" / "painter.pth"}
    assert not models["other_painter"].installed
    assert models["other_painter"].install_hint.endswith("install.py --models other_painter")
    assert not models["starter_mix"].installed and models["starter_mix"].source == "bundled"
    (manifest.parent / "starter" / "mix.pth").write_bytes(b"x" * 10)
    assert _by_name(manifest, models_dir)["starter_mix"].installed
    # an empty (e.g. interrupted, pre-allocated) file is not "installed"
    (models_dir / "other_painter").mkdir()
    (models_dir / "other_painter" / "other_painter.pth").write_bytes(b"")
    assert not _by_name(manifest, models_dir)["other_painter"].installed


def test_listing_needs_no_torch(store):
    manifest, models_dir = store
    (models_dir / "mine.pth").write_bytes(b"not read when a sidecar says what it is")
    (models_dir / "mine.json").write_text(json.dumps({"engine": "cyclegan"}))
    code = ("import sys; import backend.modelstore as m; "
            "names = [x.name for x in m.list_models()]; "
            "assert 'mine' in names, names; "
            "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')")
    env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=str(models_dir),
               STYLE_TRANSFER_MANIFEST=str(manifest))
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_user_model_with_sidecar(store):
    manifest, models_dir = store
    make_cyclegan_file(models_dir / "my_watercolour.pth", n_blocks=6)
    (models_dir / "my_watercolour.json").write_text(json.dumps(
        {"engine": "cyclegan", "display_name": "My watercolour", "arch": "resnet_6blocks",
         "trained_steps": 2000, "content": "/photos"}))        # extra notes are allowed
    info = _by_name(manifest, models_dir)["my_watercolour"]
    assert (info.source, info.engine, info.arch, info.display_name, info.installed) == (
        "user", "cyclegan", "resnet_6blocks", "My watercolour", True)
    assert get_model("my_watercolour", models_dir, manifest).paths["generator"] == \
        models_dir / "my_watercolour.pth"


def test_user_model_without_sidecar_is_recognised_from_its_keys(store, monkeypatch):
    manifest, models_dir = store
    make_cyclegan_file(models_dir / "found.pth", n_blocks=6)
    info = _by_name(manifest, models_dir)["found"]
    assert (info.engine, info.arch, info.source) == ("cyclegan", "resnet_6blocks", "user")
    cache = json.loads((models_dir / DETECTION_CACHE).read_text())
    assert cache["found.pth"]["arch"] == "resnet_6blocks"

    # the second listing answers from the cache, without reading the file again
    import backend.modelstore.validate as validate

    def must_not_run(path):
        raise AssertionError("the checkpoint was read again")

    monkeypatch.setattr(validate, "identify_checkpoint", must_not_run)
    assert _by_name(manifest, models_dir)["found"].arch == "resnet_6blocks"


def test_user_adain_decoder_reuses_the_official_encoder(store, tmp_path):
    manifest, models_dir = store
    _, decoder = make_adain_files(tmp_path / "trained")
    os.replace(decoder, models_dir / "my_decoder.pth")
    info = _by_name(manifest, models_dir)["my_decoder"]
    assert info.engine == "adain"
    assert info.paths["vgg"] == models_dir / "adain" / "vgg_normalised.pth"
    assert not info.installed and "--models adain" in info.install_hint
    with pytest.raises(StyleTransferError) as caught:
        get_model("my_decoder", models_dir, manifest)
    assert caught.value.code == MODEL_MISSING and "--models adain" in caught.value.message


def test_user_model_folder_with_model_json(store):
    manifest, models_dir = store
    folder = models_dir / "night_shift"
    make_cyclegan_file(folder / "latest_net_G.pth", n_blocks=6)
    (folder / "model.json").write_text(json.dumps(
        {"engine": "cyclegan", "display_name": "Night shift", "description": "trained by me"}))
    info = _by_name(manifest, models_dir)["night_shift"]
    assert info.installed and info.paths["generator"] == folder / "latest_net_G.pth"
    assert info.description == "trained by me"


def test_unusable_files_are_reported_not_fatal(store):
    manifest, models_dir = store
    (models_dir / "garbage.pth").write_bytes(b"\x00not a checkpoint")
    (models_dir / "typo.pth").write_bytes(b"x")
    (models_dir / "typo.json").write_text('{"engine": "cyclegan", "dispaly_name": "x"}')
    (models_dir / "painter.pth").write_bytes(b"x")                 # clashes with the manifest
    (models_dir / "painter.json").write_text('{"engine": "cyclegan"}')
    registry = ModelRegistry(models_dir, manifest)
    names = [m.name for m in registry.models]
    assert "garbage" not in names and "typo" in names          # listed, with a warning
    assert names.count("painter") == 1 and registry.models[0].source == "manifest"
    problems = "\n".join(registry.problems)
    assert "garbage.pth" in problems and "sidecar" in problems
    assert "'dispaly_name'; did you mean 'display_name'?" in problems
    assert "already taken" in problems


# ------------------------------------------------------------------------------ errors, defaults

def test_unknown_model_error_lists_what_exists(store):
    manifest, models_dir = store
    with pytest.raises(StyleTransferError) as caught:
        get_model("paintr", models_dir, manifest)
    message = caught.value.message
    assert caught.value.code == UNKNOWN_MODEL
    assert "Did you mean painter" in message and "other_painter" in message


def test_missing_model_error_says_how_to_install_and_where_to_put_files(store):
    manifest, models_dir = store
    with pytest.raises(StyleTransferError) as caught:
        get_model("other_painter", models_dir, manifest)
    message = caught.value.message
    assert caught.value.code == MODEL_MISSING
    assert "install.py --models other_painter" in message
    assert "http://h/other.pth" in message
    assert str(models_dir / "other_painter" / "other_painter.pth") in message


def test_default_model_prefers_installed_recommended(store):
    manifest, models_dir = store
    with pytest.raises(StyleTransferError) as caught:
        default_model("cyclegan", models_dir, manifest)
    assert caught.value.code == MODEL_MISSING and "--models painter" in caught.value.message
    make_cyclegan_file(models_dir / "other_painter" / "other_painter.pth", n_blocks=6)
    assert default_model("cyclegan", models_dir, manifest).name == "other_painter"
    make_cyclegan_file(models_dir / "painter" / "painter.pth", n_blocks=6)
    assert default_model("cyclegan", models_dir, manifest).name == "painter"


def test_environment_variables_choose_folder_and_manifest(store, monkeypatch):
    manifest, models_dir = store
    monkeypatch.setenv("STYLE_TRANSFER_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("STYLE_TRANSFER_MANIFEST", str(manifest))
    make_cyclegan_file(models_dir / "painter" / "painter.pth", n_blocks=6)
    assert [m.name for m in list_models() if m.installed] == ["painter"]


# ------------------------------------------------------------------------------ the CLI

def test_models_command_lists_status(store):
    manifest, models_dir = store
    make_cyclegan_file(models_dir / "painter" / "painter.pth", n_blocks=6)
    env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=str(models_dir),
               STYLE_TRANSFER_MANIFEST=str(manifest))
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "backend", "models", *args], cwd=PROJECT_ROOT, env=env,
        capture_output=True, text=True, timeout=120)
    table = run()
    assert table.returncode == 0, table.stderr
    lines = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
    assert "installed" in lines["painter"] and "cyclegan" in lines["painter"]
    assert "missing" in lines["other_painter"]
    assert "install.py --models" in table.stdout
    listing = json.loads(run("--json").stdout)
    status = {m["name"]: m["installed"] for m in listing["models"]}
    assert status == {"painter": True, "other_painter": False, "edges": False,
                      "starter_mix": False}
    only = json.loads(run("list", "--json", "--installed").stdout)
    assert [m["name"] for m in only["models"]] == ["painter"]
    verify = run("verify")
    assert verify.returncode == 0 and "painter: resnet_6blocks" in verify.stdout
