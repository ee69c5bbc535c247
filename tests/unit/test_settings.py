"""The one runtime configuration: environment, overrides, and what child processes inherit."""

from __future__ import annotations

import pytest

from stclient import settings


@pytest.fixture(autouse=True)
def clean_overrides(monkeypatch):
    monkeypatch.setattr(settings, "_overrides", {})


def test_environment_values_are_typed(monkeypatch):
    monkeypatch.setenv("STYLE_TRANSFER_NATIVE", "off")
    monkeypatch.setenv("STYLE_TRANSFER_PLAIN", "yes")
    monkeypatch.setenv("STYLE_TRANSFER_COMPILE", "")          # empty = unset
    monkeypatch.setenv("STYLE_TRANSFER_MODELS_DIR", "/srv/models")
    now = settings.current()
    assert now.native is False and now.plain is True and now.compile is False
    assert now.models_dir == "/srv/models" and now.precision == "fp32"


def test_overrides_win_and_reach_child_processes(monkeypatch):
    monkeypatch.setenv("STYLE_TRANSFER_MODELS_DIR", "/from/env")
    settings.override(models_dir="/from/flag", compile=True)
    assert settings.current().models_dir == "/from/flag" and settings.current().compile
    env = settings.child_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "STYLE_TRANSFER_MODELS_DIR": "/from/flag",
                   "STYLE_TRANSFER_COMPILE": "1"}
    assert settings.from_env(env).models_dir == "/from/flag"
    with pytest.raises(TypeError, match="modelsdir"):
        settings.override(modelsdir="/typo")


def test_every_setting_has_one_variable():
    names = list(settings.ENV.values())
    assert len(names) == len(set(names))
    assert set(settings.ENV) == set(settings.Settings.__dataclass_fields__)
