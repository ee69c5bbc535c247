"""The real GIMP runs an engine that was added with one card, one engine module and one network
module (tests/helpers/throwaway_engine.py), in a copy of the project with no other edit: its
filter procedure is registered from the card and gives the engine's pixels."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gimp.chroot import ChrootUnavailable, check_can_chroot, ensure_tarball
from tests.gimp.harness import GimpSession, ImageSpec, skip_or_fail
from tests.helpers import throwaway_engine as throwaway
from tests.helpers.daemon import start_daemon

pytestmark = pytest.mark.gimp


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return throwaway.make_project(tmp_path_factory.mktemp("throwaway-gimp") / "project")


@pytest.fixture(scope="module")
def session(project):
    try:
        check_can_chroot()
        ensure_tarball()
    except ChrootUnavailable as error:
        skip_or_fail(str(error))
    with GimpSession(project_root=project) as gimp:
        yield gimp


def test_the_new_engine_is_a_gimp_filter(session, project):
    handle = start_daemon(project / "models", runtime_dir=session.shared / "run",
                          project_root=project)
    try:
        rng = np.random.default_rng(11)
        photo = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        results = session.run([
            session.case("invert", throwaway.PROCEDURE, ImageSpec(40, 30).add("photo", photo),
                         args={"strength": 1.0, "endpoint": handle.endpoint}),
            session.case("status", "python-fu-style-transfer-status",
                         args={"endpoint": handle.endpoint}),
        ])
    finally:
        handle.stop()
    result = results["invert"]
    assert result.status == "success", result.explain()
    layer = result.layers[0]
    assert layer["name"] == "Invert: default model"
    out = result.pixels(layer)[:, :, :3].astype(int)
    assert np.abs(out - (255 - photo.astype(int))).max() <= 1
    status = results["status"]
    assert status.status == "success", status.explain()
    assert f"invert    {throwaway.MODEL}" in status.raw["returned"][0]
