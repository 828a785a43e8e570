"""DiffAugment's three augmentations with their random draws fixed by hand, on images small enough to write out
(bench/mutation.py's augment target).

`FixedDraws` stands in for torch.rand / torch.randint: it checks each draw's range, shape, device and dtype
(one draw per image, on x's device) and returns the values the test chose.
"""
import pytest
import torch

from gancore import augment
from gancore.augment import color, cutout, diff_augment, parse_policy, translation


class FixedDraws:
    def __init__(self, expected_args, values, expected_kwargs):
        self.expected_args, self.values, self.expected_kwargs = list(expected_args), list(values), expected_kwargs

    def __call__(self, *args, **kwargs):
        assert args == self.expected_args.pop(0) and kwargs == self.expected_kwargs
        return self.values.pop(0)

    def done(self):
        return not self.values and not self.expected_args


def img(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_color_shifts_brightness_then_scales_saturation_then_contrast(monkeypatch):
    # two 2-channel 1x2 images; draws: brightness r - 0.5, saturation 2 r, contrast r + 0.5
    x = img([[[[0.0, 0.4]], [[0.2, -0.2]]],
             [[[0.1, 0.3]], [[0.3, -0.1]]]])  # (2, 2, 1, 2)
    draws = [torch.tensor([0.75, 0.5]), torch.tensor([0.25, 1.0]), torch.tensor([0.0, 0.5])]
    fixed = FixedDraws([(2, 1, 1, 1)] * 3, [d.view(2, 1, 1, 1).double() for d in draws],
                       {"device": x.device, "dtype": x.dtype})
    monkeypatch.setattr(torch, "rand", fixed)
    out = color(x)
    assert fixed.done()
    # image 0: +0.25 -> c0 [0.25, 0.65], c1 [0.45, 0.05]; pixel means 0.35, 0.35; saturation x0.5 -> c0 [0.30, 0.50],
    # c1 [0.40, 0.20]; image mean 0.35, contrast x0.5 -> c0 [0.325, 0.425], c1 [0.375, 0.275]
    # image 1: +0; pixel means 0.2, 0.1; saturation x2 -> c0 [0.0, 0.5], c1 [0.4, -0.3]; contrast x1
    expected = img([[[[0.325, 0.425]], [[0.375, 0.275]]],
                    [[[0.0, 0.5]], [[0.4, -0.3]]]])
    torch.testing.assert_close(out, expected)


def test_color_contrast_is_about_each_images_own_mean(monkeypatch):
    x = img([[[[0.0, 1.0]]], [[[2.0, 2.0]]]])  # (2, 1, 1, 2): one channel, so saturation is a no-op
    draws = [torch.full((2, 1, 1, 1), 0.5, dtype=torch.float64)] * 2 + [torch.zeros(2, 1, 1, 1, dtype=torch.float64)]
    monkeypatch.setattr(torch, "rand", FixedDraws([(2, 1, 1, 1)] * 3, draws, {"device": x.device, "dtype": x.dtype}))
    torch.testing.assert_close(color(x), img([[[[0.25, 0.75]]], [[[2.0, 2.0]]]]))  # halved about 0.5; about 2.0


def shifted(x, dy, dx):
    """x (1, 1, H, W) read at (i + dy, j + dx), zero outside: what translation by (dy, dx) gives."""
    _, _, h, w = x.shape
    out = torch.zeros_like(x)
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                out[0, 0, i, j] = x[0, 0, i + dy, j + dx]
    return out


@pytest.mark.parametrize("dy, dx", [(0, 0), (1, 0), (0, -1), (2, -2), (-2, 2)])
def test_translation_shifts_each_image_with_a_zero_border(monkeypatch, dy, dx):
    x = torch.arange(1.0, 1 + 4 * 6).view(1, 1, 4, 6)  # no zero pixel: the border shows
    # h 4, w 6 at ratio 0.5: shifts up to int(2.5) = 2 and int(3.5) = 3 pixels, drawn from [-s, s + 1)
    fixed = FixedDraws([(-2, 3, (1, 1, 1)), (-3, 4, (1, 1, 1))],
                       [torch.tensor([[[dy]]]), torch.tensor([[[dx]]])], {"device": x.device})
    monkeypatch.setattr(torch, "randint", fixed)
    out = translation(x, ratio=0.5)
    assert fixed.done()
    torch.testing.assert_close(out, shifted(x, dy, dx))


def test_translation_shifts_at_least_one_pixel_and_an_eighth_by_default(monkeypatch):
    calls = []

    def record(low, high, size, device):
        calls.append((low, high, size))
        return torch.zeros(size, dtype=torch.long)

    monkeypatch.setattr(torch, "randint", record)
    x = torch.ones(3, 2, 16, 4)
    torch.testing.assert_close(translation(x), x)  # zero shift: unchanged, every channel
    assert calls == [(-2, 3, (3, 1, 1)), (-1, 2, (3, 1, 1))]  # 16/8 = 2 pixels; 4/8 rounds to 1 (int(0.5 + 0.5))
    calls.clear()
    translation(torch.ones(1, 1, 2, 3))
    assert calls == [(-1, 2, (1, 1, 1)), (-1, 2, (1, 1, 1))]  # 2/8 rounds to 0, at least 1


def test_translation_moves_each_image_by_its_own_shift(monkeypatch):
    x = torch.arange(1.0, 1 + 2 * 3 * 3).view(2, 1, 3, 3)
    fixed = FixedDraws([(-1, 2, (2, 1, 1))] * 2, [torch.tensor([[[1]], [[0]]]), torch.tensor([[[0]], [[-1]]])],
                       {"device": x.device})
    monkeypatch.setattr(torch, "randint", fixed)
    out = translation(x, ratio=0.2)  # int(3 * 0.2 + 0.5) = 1
    torch.testing.assert_close(out[:1], shifted(x[:1], 1, 0))
    torch.testing.assert_close(out[1:], shifted(x[1:], 0, -1))


def test_cutout_zeroes_a_square_of_half_the_size_at_the_drawn_corner(monkeypatch):
    x = torch.arange(1.0, 1 + 2 * 4 * 6).view(1, 2, 4, 6)
    # ch = int(2 + 0.5) = 2, cw = int(3 + 0.5) = 3; corners from [0, 4 - 2 + 1) and [0, 6 - 3 + 1)
    fixed = FixedDraws([(0, 3, (1, 1, 1)), (0, 4, (1, 1, 1))], [torch.tensor([[[1]]]), torch.tensor([[[2]]])],
                       {"device": x.device})
    monkeypatch.setattr(torch, "randint", fixed)
    out = cutout(x)
    assert fixed.done()
    expected = x.clone()
    expected[:, :, 1:3, 2:5] = 0
    torch.testing.assert_close(out, expected)


def test_cutout_square_follows_the_ratio_and_each_images_corner(monkeypatch):
    x = torch.ones(2, 1, 4, 4)
    # ratio 0.25: a 1x1 square; image 0 at (0, 3), image 1 at (3, 0)
    fixed = FixedDraws([(0, 4, (2, 1, 1)), (0, 4, (2, 1, 1))], [torch.tensor([[[0]], [[3]]]),
                                                                torch.tensor([[[3]], [[0]]])], {"device": x.device})
    monkeypatch.setattr(torch, "randint", fixed)
    out = cutout(x, ratio=0.25)
    assert out[0, 0].nonzero().tolist() != [] and out[0, 0, 0, 3] == 0 and out[1, 0, 3, 0] == 0
    assert int((out == 0).sum()) == 2 and out.dtype == x.dtype


def test_parse_policy_splits_on_commas_and_drops_blanks():
    assert parse_policy(" color, translation,,cutout ") == ["color", "translation", "cutout"]
    assert parse_policy("") == []


def test_diff_augment_applies_the_policy_in_order(monkeypatch):
    monkeypatch.setitem(augment.AUGMENTATIONS, "plus1", lambda x: x + 1)
    monkeypatch.setitem(augment.AUGMENTATIONS, "double", lambda x: x * 2)
    x = torch.tensor([1.0])
    assert diff_augment(x, ["plus1", "double"]).item() == 4.0 and diff_augment(x, ["double", "plus1"]).item() == 3.0
    assert diff_augment(x, []) is x


@pytest.mark.parametrize("dy, dx", [(-3, -5), (3, 5)])
def test_translation_by_more_than_the_border_reads_zeros_not_wrapped_pixels(monkeypatch, dy, dx):
    x = torch.arange(1.0, 1 + 4 * 6).view(1, 1, 4, 6)
    # ratio 0.75: up to int(3.5) = 3 rows and int(5) = 5 columns; indices past the 1-pixel border are clamped onto it
    fixed = FixedDraws([(-3, 4, (1, 1, 1)), (-5, 6, (1, 1, 1))],
                       [torch.tensor([[[dy]]]), torch.tensor([[[dx]]])], {"device": x.device})
    monkeypatch.setattr(torch, "randint", fixed)
    torch.testing.assert_close(translation(x, ratio=0.75), shifted(x, dy, dx))


@pytest.mark.parametrize("policy", ["color", "translation", "cutout"])
def test_every_augmentation_draws_and_indexes_on_the_images_device(policy):
    x = torch.ones(2, 3, 8, 8, device="meta")  # not the CPU: a draw or index made on the CPU could not mix in
    out = diff_augment(x, [policy])
    assert out.device.type == "meta" and out.shape == x.shape and out.dtype == x.dtype
