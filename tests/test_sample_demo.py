"""The class-conditional demo functions (dashboard Samples page, notebook 3) draw what they say."""
import numpy as np
import pytest
import torch

import gancore
from gancore.sample import class_morph, class_rows, interpolation, load_generator, noise, to_uint8
from conftest import tiny


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    run_dir = gancore.train(tiny(name="demo", conditioning="concat", runs_root=str(root)))
    G, cfg, info = load_generator(run_dir)
    return G, cfg["z_dim"]


def draw(G, z, y):
    with torch.no_grad():
        return to_uint8(G(z, torch.as_tensor(y)))


def test_class_rows_share_one_noise_batch(generator):
    G, z_dim = generator
    x, ncol = class_rows(G, z_dim, [3, 7], per_row=4, seed=5)
    assert x.shape[0] == 8 and ncol == 4
    z = noise(4, z_dim, 5)
    assert np.array_equal(x[:4], draw(G, z, [3] * 4)) and np.array_equal(x[4:], draw(G, z, [7] * 4))


def test_interpolation_runs_from_one_seed_to_the_other(generator):
    G, z_dim = generator
    x, ncol = interpolation(G, z_dim, 1, 2, steps=6, label=4)
    assert x.shape[0] == 6 == ncol
    ends = draw(G, torch.cat([noise(1, z_dim, 1), noise(1, z_dim, 2)]), [4, 4])
    assert np.abs(x[[0, -1]].astype(int) - ends.astype(int)).max() <= 1  # slerp hits both ends (up to rounding)
    assert not np.array_equal(x[1], x[0]) and not np.array_equal(x[1], x[-1])


def test_class_morph_holds_z_and_changes_the_class(generator):
    G, z_dim = generator
    x, ncol = class_morph(G, z_dim, 10, seeds=[0, 9])
    assert x.shape[0] == 20 and ncol == 10
    assert np.array_equal(x[10:], draw(G, noise(1, z_dim, 9).expand(10, -1), list(range(10))))
