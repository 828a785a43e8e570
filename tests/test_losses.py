"""Each objective's value on tiny inputs, against numbers worked out by hand (bench/mutation.py's losses target).

Logits of ln 3 make the softplus values exact: softplus(ln 3) = ln 4, softplus(-ln 3) = ln 4/3, sigmoid(ln 3) = 3/4.
Real and fake batches have different sizes, so a mean taken over the wrong batch shows.
"""
import math

import pytest
import torch

from gancore.losses import (d_hinge, d_lsgan, d_minimax, d_output, d_wasserstein, feature_matching, functions,
                            g_lsgan, g_minimax, g_nonsaturating, g_wasserstein)

L3 = math.log(3)
LN4, LN43 = math.log(4), math.log(4 / 3)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def close(value, expected):
    assert float(value) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_d_minimax_is_the_cross_entropy_of_real_against_1_and_fake_against_0():
    # real [ln3, -ln3]: -log sigmoid = ln 4/3, ln 4; fake [ln3, ln3, -ln3]: -log(1 - sigmoid) = ln 4, ln 4, ln 4/3
    close(d_minimax(t(L3, -L3), t(L3, L3, -L3)), (LN43 + LN4) / 2 + (2 * LN4 + LN43) / 3)


def test_d_minimax_with_smoothing_targets_one_minus_s_for_real_only():
    # target 0.75 for real: 0.75 softplus(-l) + 0.25 softplus(l); fakes unchanged
    real = 0.75 * LN43 + 0.25 * LN4
    close(d_minimax(t(L3), t(-L3), 0.25), real + LN43)
    close(d_minimax(t(L3), t(-L3), 0.0), LN43 + LN43)
    close(d_minimax(t(L3), t(-L3)), LN43 + LN43)  # smoothing is off unless asked for


def test_g_minimax_is_minus_log_one_minus_d_and_g_nonsaturating_is_minus_log_d():
    close(g_minimax(t(L3, -L3)), -(LN4 + LN43) / 2)
    close(g_nonsaturating(t(L3, L3, -L3)), (2 * LN43 + LN4) / 3)


def test_lsgan_is_half_the_squared_distance_to_the_targets():
    close(d_lsgan(t(3.0, 1.0), t(2.0, 0.0, 1.0)), 0.5 * ((4 + 0) / 2 + (4 + 0 + 1) / 3))
    close(d_lsgan(t(3.0), t(2.0), 0.5), 0.5 * (2.5 ** 2 + 4))  # real target 1 - 0.5
    close(d_lsgan(t(3.0), t(2.0)), 0.5 * (4 + 4))
    close(g_lsgan(t(3.0, 0.0)), 0.5 * (4 + 1) / 2)


def test_wasserstein_is_the_difference_of_mean_scores():
    close(d_wasserstein(t(1.0, 3.0), t(5.0, 6.0, 7.0)), 6.0 - 2.0)
    close(d_wasserstein(t(1.0, 3.0), t(5.0, 6.0, 7.0), 0.25), 4.0)  # no target, nothing to smooth
    close(g_wasserstein(t(2.0, 4.0, 9.0)), -5.0)


def test_hinge_pushes_real_above_1_and_fake_below_minus_1():
    # real [0.5, 2]: relu(1 - l) = 0.5, 0; fake [-0.5, -2, 1]: relu(1 + l) = 0.5, 0, 2
    close(d_hinge(t(0.5, 2.0), t(-0.5, -2.0, 1.0)), 0.25 + 2.5 / 3)
    close(d_hinge(t(1.0), t(-1.0)), 0.0)  # exactly on the margin: no loss
    assert functions("hinge") == (d_hinge, g_wasserstein)


def test_feature_matching_is_the_squared_distance_of_the_batch_means():
    real = t(1.0, 2.0, 3.0, 4.0, 5.0, 6.0).view(3, 2)  # batch means (3, 4)
    fake = t(0.0, 1.0).view(1, 2)
    close(feature_matching(real, fake), 3.0 ** 2 + 3.0 ** 2)
    assert feature_matching(real.half(), fake.half()).dtype == torch.float32  # fp16 features summed in fp32


def test_d_output_is_a_probability_for_cross_entropy_losses_and_the_raw_score_otherwise():
    close(d_output("minimax", t(L3)), 0.75)
    close(d_output("nonsaturating", t(-L3)), 0.25)
    for loss in ("lsgan", "wgan", "wgan-gp", "hinge"):
        close(d_output(loss, t(L3)), L3)
