"""install.py: the GIMP plug-in install into a temporary GIMP config tree (HOME points there),
--link, --uninstall, idempotent second runs, pyzmq for a GIMP Python that lacks it, --check, and
models through the whole chain (install.py -> .venv python -m backend models install).

install.py runs as a subprocess with a Python that has no torch where one exists (it must need
only the standard library). The virtual-environment step is skipped with --python."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from backend import PROJECT_ROOT
from tests.helpers.checkpoints import make_cyclegan_file
from tests.helpers.manifests import generator_entry, write_manifest

PLUGIN = "style_transfer"
OLD = 1_000_000_000          # 2001: an mtime GIMP would have cached long ago


def _system_python() -> str:
    """A Python without torch, to prove install.py needs only the standard library."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and os.path.exists(candidate) and subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info >= (3, 10)"],
                capture_output=True).returncode == 0:
            return candidate
    return sys.executable


SYSTEM_PYTHON = _system_python()


def _load_install_module(path: Path = PROJECT_ROOT / "install.py"):
    spec = importlib.util.spec_from_file_location("install_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of the project without weights, so --link writes no files into the real checkout.
    Plug-in source files get an old mtime so that 'touched' is measurable."""
    root = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT / "plugin" / PLUGIN, root / "plugin" / PLUGIN,
                    ignore=shutil.ignore_patterns("__pycache__", "config.json", "vendor"))
    shutil.copytree(PROJECT_ROOT / "backend", root / "backend",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT_ROOT / "stclient", root / "stclient",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "models").mkdir()
    shutil.copy2(PROJECT_ROOT / "models" / "manifest.json", root / "models" / "manifest.json")
    shutil.copy2(PROJECT_ROOT / "install.py", root / "install.py")
    for name in ("requirements.txt", "requirements-test.txt"):
        shutil.copy2(PROJECT_ROOT / name, root / name)
    src = root / "plugin" / PLUGIN
    if not (src / f"{PLUGIN}.py").exists():   # the plug-in's main file (written elsewhere)
        (src / f"{PLUGIN}.py").write_text("#!/usr/bin/env python3\n")
    (src / "__pycache__").mkdir(exist_ok=True)
    (src / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"never copied")
    for path in src.rglob("*"):
        os.utime(path, (OLD, OLD))
    return root


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    (home / ".config" / "GIMP" / "3.0").mkdir(parents=True)
    (home / ".config" / "GIMP" / "2.10" / "plug-ins").mkdir(parents=True)     # not GIMP 3
    (home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.2").mkdir(parents=True)
    return home


def run_install(repo: Path, home: Path, *args: str, env: dict | None = None,
                gimp_python: str | None = sys.executable) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, HOME=str(home), PATH="/usr/bin:/bin")
    full_env.pop("XDG_CONFIG_HOME", None)
    full_env.pop("GIMP3_DIRECTORY", None)
    full_env.update(env or {})
    command = [SYSTEM_PYTHON, str(repo / "install.py"), "--python", sys.executable, "--no-demo",
               "--no-models"]
    if gimp_python:
        command += ["--gimp-python", gimp_python]
    return subprocess.run(command + list(args), env=full_env, capture_output=True, text=True,
                          timeout=600)


def _targets(home: Path) -> list[Path]:
    return [home / ".config" / "GIMP" / "3.0" / "plug-ins" / PLUGIN,
            home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.2" / "plug-ins"
            / PLUGIN]


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns,
                                         hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ plug-in install

def test_plugin_installs_into_every_gimp3_folder(repo, home):
    started = time.time()
    result = run_install(repo, home)
    assert result.returncode == 0, result.stdout + result.stderr
    # the plug-in folder plus the project's one copy of the client package, as its stclient/
    sources = {}
    for base, prefix in ((repo / "plugin" / PLUGIN, ""), (repo / "stclient", "stclient/")):
        sources.update({prefix + p.relative_to(base).as_posix(): p for p in base.rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts})
    expected = sorted(sources)
    for dest in _targets(home):
        main = dest / f"{PLUGIN}.py"
        assert main.is_file() and os.access(main, os.X_OK)             # the run bit
        assert main.stat().st_mtime >= started - 1                     # touched: GIMP re-reads it
        copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()
                        and p.name not in ("config.json", ".install-record.json"))
        assert copied == expected                                      # no __pycache__, no extras
        for relative in expected:
            assert (dest / relative).read_bytes() == sources[relative].read_bytes()
        config = json.loads((dest / "config.json").read_text())
        assert config["python"] == sys.executable
        assert config["project_root"] == str(repo)
        assert config["installed_by"] == "install.py" and config["endpoint"] == ""
    assert not (home / ".config" / "GIMP" / "2.10" / "plug-ins" / PLUGIN).exists()
    assert "copied the plug-in" in result.stdout


def test_second_run_changes_nothing(repo, home):
    assert run_install(repo, home).returncode == 0
    before = [_snapshot(dest) for dest in _targets(home)]
    started = time.monotonic()
    again = run_install(repo, home)
    elapsed = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert [_snapshot(dest) for dest in _targets(home)] == before
    assert again.stdout.count("is up to date") == 2
    assert elapsed < 15


def test_changed_source_is_updated_and_touched(repo, home):
    assert run_install(repo, home).returncode == 0
    dest = _targets(home)[0]
    main = dest / f"{PLUGIN}.py"
    os.utime(main, (OLD, OLD))
    client = repo / "stclient"                     # installed as the plug-in's stclient/
    (client / "added.py").write_text("VALUE = 1\n")
    (client / "errors.py").write_text((client / "errors.py").read_text() + "\n# changed\n")
    result = run_install(repo, home, "--gimp-plugins-dir", str(dest.parent))
    assert result.returncode == 0, result.stderr
    assert (dest / "stclient" / "added.py").read_text() == "VALUE = 1\n"
    assert (dest / "stclient" / "errors.py").read_text().endswith("# changed\n")
    assert main.stat().st_mtime > OLD + 1000                         # touched again
    (client / "added.py").unlink()
    assert run_install(repo, home, "--gimp-plugins-dir", str(dest.parent)).returncode == 0
    assert not (dest / "stclient" / "added.py").exists()            # removed files go too


def test_an_interrupted_install_is_completed(repo, home):
    assert run_install(repo, home).returncode == 0
    dest = _targets(home)[0]
    (dest / "config.json").unlink()                      # as if the first run died half-way
    (dest / "stclient" / "errors.py").unlink()
    result = run_install(repo, home)
    assert result.returncode == 0, result.stderr
    assert (dest / "stclient" / "errors.py").read_bytes() == \
        (repo / "stclient" / "errors.py").read_bytes()
    assert json.loads((dest / "config.json").read_text())["installed_by"] == "install.py"


def test_link_mode_and_switching_back(repo, home):
    custom = home / "plugins"
    result = run_install(repo, home, "--link", "--gimp-plugins-dir", str(custom))
    assert result.returncode == 0, result.stderr
    dest = custom / PLUGIN
    src = repo / "plugin" / PLUGIN
    assert dest.is_symlink() and os.path.realpath(dest) == os.path.realpath(src)
    assert json.loads((src / "config.json").read_text())["python"] == sys.executable
    assert os.access(src / f"{PLUGIN}.py", os.X_OK)
    again = run_install(repo, home, "--link", "--gimp-plugins-dir", str(custom))
    assert "is up to date" in again.stdout
    copy = run_install(repo, home, "--gimp-plugins-dir", str(custom))
    assert copy.returncode == 0
    assert not dest.is_symlink() and (dest / f"{PLUGIN}.py").is_file()


def test_uninstall_removes_exactly_what_was_installed(repo, home):
    assert run_install(repo, home).returncode == 0
    first, second = _targets(home)
    (first / "stclient" / "__pycache__").mkdir()                 # as GIMP's Python leaves it
    (first / "stclient" / "__pycache__" / "errors.cpython-313.pyc").write_bytes(b"cache")
    (second / "my notes.txt").write_text("the user's own file")
    result = run_install(repo, home, "--uninstall")
    assert result.returncode == 0, result.stderr
    assert not first.exists()
    assert sorted(p.name for p in second.iterdir()) == ["my notes.txt"]
    assert "kept files it did not install: my notes.txt" in result.stdout
    assert (repo / "plugin" / PLUGIN / f"{PLUGIN}.py").exists()     # the source is untouched
    run_install(repo, home, "--uninstall")                          # the user's file survives
    assert (second / "my notes.txt").read_text() == "the user's own file"


def test_uninstall_of_a_link_removes_its_config(repo, home):
    custom = home / "plugins"
    assert run_install(repo, home, "--link", "--gimp-plugins-dir", str(custom)).returncode == 0
    result = run_install(repo, home, "--uninstall", "--gimp-plugins-dir", str(custom))
    assert result.returncode == 0, result.stderr
    assert not (custom / PLUGIN).exists() and not (custom / PLUGIN).is_symlink()
    assert not (repo / "plugin" / PLUGIN / "config.json").exists()
    assert (repo / "plugin" / PLUGIN / f"{PLUGIN}.py").exists()


def test_a_foreign_plugin_folder_is_left_alone(repo, home):
    dest = _targets(home)[0]
    dest.mkdir(parents=True)
    (dest / f"{PLUGIN}.py").write_text("somebody else's plug-in")
    result = run_install(repo, home)
    assert result.returncode == 1
    assert "was not installed by install.py" in result.stderr
    assert (dest / f"{PLUGIN}.py").read_text() == "somebody else's plug-in"
    assert run_install(repo, home, "--uninstall").returncode == 1    # not removed either
    assert (dest / f"{PLUGIN}.py").exists()


def test_no_gimp_is_not_an_error(repo, tmp_path):
    empty_home = tmp_path / "nobody"
    empty_home.mkdir()
    result = run_install(repo, empty_home)
    assert result.returncode == 0, result.stderr
    assert "GIMP 3 was not found" in result.stdout
    assert not any(empty_home.rglob(PLUGIN))


def test_gimp3_directory_variable_is_honoured(repo, tmp_path):
    config = tmp_path / "gimpcfg"
    config.mkdir()
    result = run_install(repo, tmp_path, env={"GIMP3_DIRECTORY": str(config)})
    assert result.returncode == 0, result.stderr
    assert (config / "plug-ins" / PLUGIN / f"{PLUGIN}.py").is_file()


# ------------------------------------------------------------------------------ pyzmq for GIMP

def _fake_pyzmq_wheel(folder: Path) -> Path:
    """A local, offline stand-in for the pyzmq wheel pip would fetch (py3-none-any)."""
    files = {"zmq/__init__.py": b'__version__ = "99.0.0"\n',
             "pyzmq-99.0.0.dist-info/METADATA":
                 b"Metadata-Version: 2.1\nName: pyzmq\nVersion: 99.0.0\n",
             "pyzmq-99.0.0.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("pyzmq-99.0.0.dist-info/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "pyzmq-99.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("pyzmq-99.0.0.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def test_pyzmq_is_vendored_for_a_gimp_python_without_it(repo, home, tmp_path):
    gimp_env = tmp_path / "gimp_python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(gimp_env)], check=True,
                   timeout=120)
    gimp_python = str(gimp_env / "bin" / "python")
    assert subprocess.run([gimp_python, "-c", "import zmq"],
                          capture_output=True).returncode != 0
    wheels = tmp_path / "wheels"
    _fake_pyzmq_wheel(wheels)
    offline_pip = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    custom = home / "plugins"
    result = run_install(repo, home, "--gimp-plugins-dir", str(custom), env=offline_pip,
                         gimp_python=gimp_python)
    assert result.returncode == 0, result.stdout + result.stderr
    vendor = custom / PLUGIN / "vendor"
    assert (vendor / "zmq" / "__init__.py").is_file()
    assert "installed pyzmq 99.0.0 for GIMP's Python" in result.stdout
    probe = subprocess.run([gimp_python, "-c", f"import sys; sys.path.insert(0, {str(vendor)!r});"
                                               " import zmq; print(zmq.__version__)"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "99.0.0"
    again = run_install(repo, home, "--gimp-plugins-dir", str(custom), env=offline_pip,
                        gimp_python=gimp_python)
    assert "installed pyzmq" not in again.stdout and "is up to date" in again.stdout
    removed = run_install(repo, home, "--uninstall", "--gimp-plugins-dir", str(custom))
    assert removed.returncode == 0 and not (custom / PLUGIN).exists()


def test_wheel_platform_tags():
    install = _load_install_module()
    assert "manylinux_2_17_x86_64" in install.wheel_platforms("linux-x86_64")
    assert install.wheel_platforms("win-amd64") == ["win_amd64"]
    mac = install.wheel_platforms("macosx-11.0-arm64")
    assert "macosx_11_0_arm64" in mac and "macosx_10_15_universal2" in mac


# ------------------------------------------------------------------------------ the venv step

def test_venv_is_reused_only_while_the_requirements_are_unchanged(repo, tmp_path):
    install = _load_install_module(repo / "install.py")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    wrapper = venv / "bin" / "python"                      # a "venv" whose packages do import
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    assert not install.venv_is_current(venv, repo)        # never stamped: must be (re)installed
    (venv / install.VENV_STAMP).write_text(install.requirements_digest(repo))
    assert install.venv_is_current(venv, repo)
    with open(repo / "requirements.txt", "a") as handle:
        handle.write("somepackage>=1\n")
    assert not install.venv_is_current(venv, repo)        # requirements changed
    (venv / install.VENV_STAMP).write_text(install.requirements_digest(repo))
    assert install.venv_is_current(venv, repo)
    # stamped, but the packages are gone (e.g. someone uninstalled torch): not current
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True,
                   timeout=120)
    (bare / install.VENV_STAMP).write_text(install.requirements_digest(repo))
    assert not install.venv_is_current(bare, repo)


def test_install_py_imports_only_the_standard_library():
    code = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='not_main'); "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'zmq', 'PIL', 'backend', 'stclient')]; "
            "assert not bad, bad; print('ok')")
    out = subprocess.run([SYSTEM_PYTHON, "-c", code, str(PROJECT_ROOT / "install.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------------------ --check, models

def test_check_reports_the_plugin_state_truthfully(repo, home):
    assert run_install(repo, home).returncode == 0
    env = {"STYLE_TRANSFER_MODELS_DIR": str(home / "no-models")}
    check = run_install(repo, home, "--check", env=env)
    assert "[ ok ] PyTorch: 2." in check.stdout
    assert "device: CPU" in check.stdout or "device: CUDA" in check.stdout
    assert check.stdout.count(": current") == 2, check.stdout
    assert "GIMP's Python" in check.stdout and "pyzmq" in check.stdout
    assert "daemon" in check.stdout
    assert check.returncode == 0, check.stdout + check.stderr
    src = repo / "plugin" / PLUGIN
    (repo / "stclient" / "errors.py").write_text("# edited\n")
    install = _load_install_module(repo / "install.py")      # the same function --check uses
    for dest in _targets(home):
        assert install.plugin_state(dest, src) == \
            "outdated: 1 file(s) differ (stclient/errors.py)"
    (dest / f"{PLUGIN}.py").chmod(0o644)
    (repo / "stclient" / "errors.py").write_bytes((dest / "stclient" / "errors.py").read_bytes())
    assert install.plugin_state(dest, src) == f"outdated: {PLUGIN}.py is not executable"


def test_models_through_install_py_with_a_mirror(tmp_path, home):
    mirror = tmp_path / "mirror"
    make_cyclegan_file(mirror / "tiny.pth", n_blocks=6)
    manifest = write_manifest(tmp_path / "manifest.json",
                              [generator_entry("tiny", "http://example.invalid/tiny.pth")])
    models_dir = tmp_path / "models"
    env = {"STYLE_TRANSFER_MODELS_DIR": str(models_dir),
           "STYLE_TRANSFER_MANIFEST": str(manifest)}
    args = ["--no-plugin", "--models", "tiny", "--mirror", str(mirror)]
    result = run_install(PROJECT_ROOT, home, *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (models_dir / "tiny" / "tiny.pth").read_bytes() == (mirror / "tiny.pth").read_bytes()
    assert "installed: tiny" in result.stdout
    again = run_install(PROJECT_ROOT, home, *args, env=env)
    assert again.returncode == 0 and "already installed: tiny" in again.stdout
    offline = run_install(PROJECT_ROOT, home, "--no-plugin", "--models", "tiny", "--force",
                          env=env)
    assert offline.returncode == 1
    assert "http://example.invalid/tiny.pth" in offline.stderr
    assert str(models_dir / "tiny" / "tiny.pth") in offline.stderr


# ------------------------------------------------------------------------------ the demo

def test_demo_stylizes_the_examples_with_the_installed_models(tmp_path, home):
    models_dir = tmp_path / "models"
    make_cyclegan_file(models_dir / "painter" / "painter.pth", n_blocks=6)
    manifest = write_manifest(tmp_path / "manifest.json", [
        generator_entry("painter", "http://example.invalid/painter.pth", recommended=True),
        generator_entry("unused", "http://example.invalid/unused.pth")])
    env = {"STYLE_TRANSFER_MODELS_DIR": str(models_dir),
           "STYLE_TRANSFER_MANIFEST": str(manifest)}
    out = tmp_path / "demo"
    command = [SYSTEM_PYTHON, str(PROJECT_ROOT / "install.py"), "--python", sys.executable,
               "--no-plugin", "--no-models", "--demo-dir", str(out)]
    result = subprocess.run(command, env=dict(os.environ, HOME=str(home), **env),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    from PIL import Image
    examples = sorted((PROJECT_ROOT / "examples" / "content").glob("*.jpg"))
    assert examples
    for example in examples:
        made = out / "painter" / example.name
        assert made.is_file(), result.stdout
        with Image.open(made) as image, Image.open(example) as source:
            assert image.size == source.size
    assert f"Demo results are in {out}" in result.stdout


def test_demo_without_any_model_says_how_to_get_them(tmp_path, home):
    manifest = write_manifest(tmp_path / "manifest.json", [
        generator_entry("painter", "http://example.invalid/painter.pth", recommended=True)])
    env = dict(os.environ, HOME=str(home), STYLE_TRANSFER_MODELS_DIR=str(tmp_path / "none"),
               STYLE_TRANSFER_MANIFEST=str(manifest))
    result = subprocess.run([SYSTEM_PYTHON, str(PROJECT_ROOT / "install.py"), "--python",
                             sys.executable, "--no-plugin", "--no-models", "--demo-dir",
                             str(tmp_path / "d")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "no model is installed" in result.stdout
    assert "install.py --models recommended" in result.stdout
    assert not (tmp_path / "d").exists()
