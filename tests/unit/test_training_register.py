"""Finished models land in the models folder in the official layouts, are listed by the model
store, and run through the Runtime with the same pixels the trained network gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.engines.job import StylizeJob
from backend.modelstore import list_models
from backend.networks.checkpoints import load_network, load_state_dict
from backend.runtime import Runtime
from backend.training import synthetic
from backend.training.adain_model import AdaINRecipe
from backend.training.common import run_training
from backend.training.cyclegan_model import CycleGANRecipe
from backend.training.options import TrainOptions
from backend.training.pix2pix_model import Pix2PixRecipe
from stclient.errors import BAD_REQUEST, StyleTransferError
from tests.helpers.checkpoints import make_adain_files, make_cyclegan_file, make_pix2pix_file
from tests.helpers.training import one_thread, train_cli  # noqa: F401  (autouse)


def _base(tmp_path: Path, **kw) -> dict:
    return dict(steps=1, sample_every=0, checkpoint_every=0, quiet=True, seed=0,
                runs_dir=str(tmp_path / "runs"), models_dir=str(tmp_path / "models"), **kw)


def _listed(models_dir: Path) -> dict:
    return {m.name: m for m in list_models(models_dir) if m.source == "user"}


def _as_signed(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None] * 2.0 - 1.0


def _as_image(tensor: torch.Tensor) -> np.ndarray:
    return ((tensor[0].float().clamp(-1, 1).numpy().transpose(1, 2, 0) + 1.0) / 2.0)


def test_cyclegan_models_are_registered_listed_and_run(tmp_path):
    a, b = synthetic.write_unpaired(tmp_path / "data", 2, 32, seed=0)
    options = TrainOptions(engine="cyclegan", name="toy_a2b", domain_a=str(a), domain_b=str(b),
                           arch="resnet_6blocks", size=32, load_size=32,
                           display_name="Toy colours", **_base(tmp_path))
    result = run_training(CycleGANRecipe, options, warn=lambda m: None)
    models = tmp_path / "models"
    assert sorted(p.name for p in result.registered) == ["toy_a2b.pth", "toy_a2b_BtoA.pth"]
    sidecar = json.loads((models / "toy_a2b.json").read_text())
    assert sidecar["engine"] == "cyclegan" and sidecar["arch"] == "resnet_6blocks"
    assert sidecar["display_name"] == "Toy colours (A\u2192B, trained)"
    listed = _listed(models)
    assert {"toy_a2b", "toy_a2b_BtoA"} <= set(listed)
    assert listed["toy_a2b"].installed and listed["toy_a2b"].engine == "cyclegan"
    # the same keys and shapes as a released generator file
    reference = load_state_dict(make_cyclegan_file(tmp_path / "ref.pth", n_blocks=6))
    ours = load_state_dict(models / "toy_a2b.pth")
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
           {k: tuple(v.shape) for k, v in reference.items()}
    assert load_network("cyclegan", "generator", models / "toy_a2b.pth")[0] == "resnet_6blocks"
    # the reference naming in the run folder, for the reference code
    assert (result.run_dir / "latest_net_G_A.pth").is_file()
    assert (result.run_dir / "latest_net_D_B.pth").is_file()

    image = synthetic.scenes(1, 32, seed=5)[0]
    runtime = Runtime(device="cpu", models_dir=models)
    out = runtime.stylize(StylizeJob(engine="cyclegan", content=image, model="toy_a2b"))
    with torch.no_grad():
        expected = _as_image(result.recipe.G_A.eval()(_as_signed(image)))
    assert out.shape == image.shape
    assert np.abs(out - expected).max() < 2e-3


def test_pix2pix_model_is_registered_with_batchnorm_statistics_and_runs(tmp_path):
    root = synthetic.write_paired(tmp_path / "data", 2, 128, seed=0)
    options = TrainOptions(engine="pix2pix", name="toy_p2p", input_dir=str(root / "input"),
                           target_dir=str(root / "target"), arch="unet_128", size=128,
                           load_size=128, **_base(tmp_path))
    result = run_training(Pix2PixRecipe, options, warn=lambda m: None)
    path = tmp_path / "models" / "toy_p2p.pth"
    assert result.registered == [path]
    saved = torch.load(path, weights_only=True)
    reference = torch.load(make_pix2pix_file(tmp_path / "ref.pth", arch="unet_128"),
                           weights_only=True)
    assert set(saved) == set(reference) - {"_metadata"}
    assert {k: tuple(v.shape) for k, v in saved.items()} == \
           {k: tuple(v.shape) for k, v in reference.items() if k != "_metadata"}
    tracked = [k for k in saved if k.endswith("num_batches_tracked")]
    assert tracked and all(int(saved[k]) == 1 for k in tracked)     # one training batch
    assert not torch.equal(saved["model.model.1.model.2.running_mean"],
                           torch.zeros_like(saved["model.model.1.model.2.running_mean"]))
    info = _listed(tmp_path / "models")["toy_p2p"]
    assert info.engine == "pix2pix" and info.arch == "unet_128" and info.installed

    image = synthetic.scenes(1, 128, seed=5)[0]
    out = Runtime(device="cpu", models_dir=tmp_path / "models").stylize(
        StylizeJob(engine="pix2pix", content=image, model="toy_p2p"))
    expected = _as_image(result.recipe.generate(_as_signed(image)))
    assert np.abs(out - expected).max() < 2e-3


def test_adain_decoder_is_registered_with_its_encoder_and_runs(tmp_path):
    content, style = synthetic.write_styles(tmp_path / "data", 2, 40, seed=0)
    vgg, _ = make_adain_files(tmp_path / "vgg")
    options = TrainOptions(engine="adain", name="toy_decoder", content=str(content),
                           style=str(style), vgg=str(vgg), size=32, load_size=40, batch=2,
                           **_base(tmp_path))
    result = run_training(AdaINRecipe, options, warn=lambda m: None)
    models = tmp_path / "models"
    assert result.registered == [models / "toy_decoder.pth"]
    sidecar = json.loads((models / "toy_decoder.json").read_text())
    assert sidecar["engine"] == "adain" and sidecar["arch"] == "adain_decoder"
    assert Path(sidecar["vgg"]) == Path(vgg).resolve()
    info = _listed(models)["toy_decoder"]
    assert info.installed and Path(info.paths["vgg"]) == Path(vgg).resolve()
    assert load_network("adain", "decoder", models / "toy_decoder.pth")[0] == "adain_decoder"

    scene = synthetic.scenes(1, 32, seed=3)[0]
    texture = synthetic.scenes(1, 32, seed=4)[0][..., ::-1].copy()
    out = Runtime(device="cpu", models_dir=models).stylize(
        StylizeJob(engine="adain", content=scene, styles=[texture], model="toy_decoder"))
    recipe = result.recipe
    with torch.no_grad():
        expected, _, _ = recipe.stylize(torch.from_numpy(scene.transpose(2, 0, 1).copy())[None],
                                        torch.from_numpy(texture.transpose(2, 0, 1).copy())[None])
    expected = expected[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    assert out.shape == scene.shape
    assert np.abs(out - expected).max() < 2e-3


def test_names_of_official_or_existing_models_are_refused_before_training(tmp_path):
    a, b = synthetic.write_unpaired(tmp_path / "data", 2, 32, seed=0)
    official = TrainOptions(engine="cyclegan", name="style_monet", domain_a=str(a),
                            domain_b=str(b), arch="resnet_6blocks", ngf=4, ndf=4, size=32,
                            load_size=32, **_base(tmp_path))
    with pytest.raises(StyleTransferError) as caught:
        run_training(CycleGANRecipe, official, warn=lambda m: None)
    assert caught.value.code == BAD_REQUEST and "official model" in caught.value.message
    models = tmp_path / "models"
    models.mkdir()
    (models / "mine_BtoA.pth").write_bytes(b"x")
    taken = TrainOptions(engine="cyclegan", name="mine", domain_a=str(a), domain_b=str(b),
                         arch="resnet_6blocks", ngf=4, ndf=4, size=32, load_size=32,
                         **_base(tmp_path))
    with pytest.raises(StyleTransferError, match="mine_BtoA.*already exists"):
        run_training(CycleGANRecipe, taken, warn=lambda m: None)
    assert not (tmp_path / "runs" / "mine").exists()


def test_command_line_trains_registers_resumes_and_reports_bad_data(tmp_path):
    a, b = synthetic.write_unpaired(tmp_path / "data", 2, 32, seed=0)
    models, runs = tmp_path / "models", tmp_path / "runs"
    common = ["--models-dir", str(models), "--runs-dir", str(runs), "--threads", "1"]
    done = train_cli("cyclegan", "--domain-a", str(a), "--domain-b", str(b), "--name", "cli_cg",
                "--arch", "resnet_6blocks", "--size", "32", "--load-size", "36", "--steps", "2",
                "--sample-every", "1", "--checkpoint-every", "1", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2/2" in done.stderr and "cyc_A" in done.stderr and "ETA" in done.stderr
    assert "Registered: cli_cg, cli_cg_BtoA" in done.stderr
    assert (models / "cli_cg.pth").is_file() and (models / "cli_cg_BtoA.json").is_file()
    assert (runs / "cli_cg" / "samples" / "step_0000002.png").is_file()
    assert {"cli_cg", "cli_cg_BtoA"} <= set(_listed(models))
    # the same command with --resume and a longer run continues from step 2
    resumed = train_cli("cyclegan", "--name", "cli_cg", "--resume", "--steps", "3", *common,
                   cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "3/3" in resumed.stderr

    (tmp_path / "empty").mkdir()
    bad = train_cli("pix2pix", "--input-dir", str(tmp_path / "empty"), "--target-dir", str(a),
               "--name", "nothing", *common, cwd=tmp_path)
    assert bad.returncode == 1
    assert "error (bad_request)" in bad.stderr and "has no images" in bad.stderr
    assert not (runs / "nothing").exists()
