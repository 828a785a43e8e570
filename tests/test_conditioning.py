"""How a label enters G and D, on modules whose weights are set by hand, and each method's extra loss terms
against hand-computed cross-entropies (bench/mutation.py's conditioning target).

Class logits [0, ln 3] give softmax (1/4, 3/4): cross-entropy ln 4 for class 0 and ln 4/3 for class 1.
"""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from gancore.conditioning import (METHODS, ConcatD, ConcatG, DHead, NoLabelD, NoLabelG, acgan_d_loss, acgan_g_loss,
                                  d_conditioner, g_conditioner, no_extra_loss)

LN4, LN43 = math.log(4), math.log(4 / 3)
CLS = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]])  # two samples, both softmax (1/4, 3/4)


def set_embedding(embed: nn.Embedding, rows):
    with torch.no_grad():
        embed.weight.copy_(torch.tensor(rows, dtype=torch.float32))


def test_without_labels_g_and_d_pass_their_input_through():
    z, x = torch.randn(2, 3), torch.randn(2, 1, 4, 4)
    assert NoLabelG()(z, torch.tensor([0, 1])) is z and NoLabelD()(x, None) is x
    assert NoLabelG.extra_dim == 0 and NoLabelD.extra_dim == 0 and NoLabelD.extra_channels == 0


def test_concat_g_appends_the_label_embedding_to_z():
    g = ConcatG(num_classes=3, embed_dim=2)
    assert g.extra_dim == 2 and g.embed.weight.shape == (3, 2)
    set_embedding(g.embed, [[1, 2], [3, 4], [5, 6]])
    out = g(torch.tensor([[0.5], [-0.5]]), torch.tensor([2, 0]))
    assert out.tolist() == [[0.5, 5, 6], [-0.5, 1, 2]]


def test_concat_d_appends_a_label_channel_to_images():
    d = ConcatD(num_classes=2, embed_dim=7, image_hw=(2, 3))  # embed_dim is for flat inputs only
    assert (d.extra_channels, d.extra_dim) == (1, 0) and d.embed.weight.shape == (2, 6)
    set_embedding(d.embed, [[0, 1, 2, 3, 4, 5], [10, 11, 12, 13, 14, 15]])
    x = torch.full((2, 1, 2, 3), -1.0)
    out = d(x, torch.tensor([1, 0]))
    assert out.shape == (2, 2, 2, 3)
    assert torch.equal(out[:, 0], x[:, 0])
    assert out[0, 1].tolist() == [[10, 11, 12], [13, 14, 15]] and out[1, 1].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_concat_d_appends_the_embedding_to_flat_inputs():
    d = ConcatD(num_classes=2, embed_dim=2, image_hw=None)
    assert (d.extra_channels, d.extra_dim) == (0, 2) and d.embed.weight.shape == (2, 2)
    set_embedding(d.embed, [[1, 2], [3, 4]])
    out = d(torch.tensor([[[0.5, 0.25]], [[-1.0, 2.0]]]), torch.tensor([1, 0]))  # (2, 1, 2): flattened first
    assert out.tolist() == [[0.5, 0.25, 3, 4], [-1.0, 2.0, 1, 2]]


@pytest.mark.parametrize("method, g_concat, d_concat", [("none", False, False), ("concat", True, True),
                                                        ("acgan", True, False), ("projection", False, False)])
def test_conditioners_follow_the_method(method, g_concat, d_concat):
    g = g_conditioner(method, 5, 3)
    d = d_conditioner(method, 5, 3, (4, 4))
    assert isinstance(g, ConcatG if g_concat else NoLabelG) and isinstance(d, ConcatD if d_concat else NoLabelD)
    if g_concat:
        assert g.embed.weight.shape == (5, 3)
    if d_concat:
        assert d.embed.weight.shape == (5, 16) and d.image_hw == (4, 4)
        assert d_conditioner(method, 5, 3).embed.weight.shape == (5, 3)  # no image size: flat inputs


def head(method, features=2, num_classes=3):
    h = DHead(features, num_classes, method)
    with torch.no_grad():
        h.out.weight.copy_(torch.tensor([[1.0, -1.0]]))
        h.out.bias.fill_(0.5)
    return h


def test_head_without_conditioning_is_the_logit_alone():
    h = head("none")
    assert h.embed is None and h.classifier is None
    feats = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    logits, cls, out = h(feats, torch.tensor([0, 1]))
    assert logits.tolist() == [1.5, -2.5] and cls is None and out is feats


def test_projection_head_adds_the_inner_product_with_the_class_embedding():
    h = head("projection")
    assert h.classifier is None and h.embed.weight.shape == (3, 2)
    set_embedding(h.embed, [[1, 0], [0, 1], [2, 2]])
    feats = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    logits, cls, _ = h(feats, torch.tensor([2, 1]))
    assert logits.tolist() == [1.5 + 6.0, -2.5 + 3.0] and cls is None


def test_acgan_head_classifies_the_features():
    h = head("acgan")
    assert h.embed is None and h.classifier.weight.shape == (3, 2)
    with torch.no_grad():
        h.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        h.classifier.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    logits, cls, _ = h(torch.tensor([[2.0, 1.0]]), torch.tensor([0]))
    assert logits.tolist() == [1.5] and cls.tolist() == [[2.0, 1.0, 2.0]]


def cfg(weight=1.0, fake_weight=0.0):
    return SimpleNamespace(acgan_weight=weight, acgan_fake_weight=fake_weight)


def test_acgan_d_loss_is_the_class_cross_entropy_of_real_images_times_its_weight():
    y = torch.tensor([0, 1])
    term, logs = acgan_d_loss(cfg(weight=2.0), CLS, None, y)  # fakes are not classified by default
    assert term.item() == pytest.approx(2.0 * (LN4 + LN43) / 2)
    assert list(logs) == ["loss_cls_d"] and logs["loss_cls_d"].item() == pytest.approx((LN4 + LN43) / 2)


def test_acgan_d_loss_adds_the_fakes_cross_entropy_by_acgan_fake_weight():
    real_cls, fake_cls = CLS, CLS.flip(1)  # fakes: softmax (3/4, 1/4)
    y = torch.tensor([1, 1])
    term, logs = acgan_d_loss(cfg(weight=2.0, fake_weight=0.5), real_cls, fake_cls, y)
    loss = LN43 + 0.5 * LN4
    assert term.item() == pytest.approx(2.0 * loss) and logs["loss_cls_d"].item() == pytest.approx(loss)


def test_acgan_g_loss_is_the_class_cross_entropy_of_the_fakes_by_their_intended_label():
    term, logs = acgan_g_loss(cfg(weight=3.0), CLS, torch.tensor([0, 0]))
    assert term.item() == pytest.approx(3.0 * LN4)
    assert list(logs) == ["loss_cls_g"] and logs["loss_cls_g"].item() == pytest.approx(LN4)
    assert acgan_g_loss(cfg(), CLS.half(), torch.tensor([1, 1]))[0].dtype == torch.float32  # fp16 logits in fp32


def test_methods_other_than_acgan_add_nothing():
    assert no_extra_loss(cfg(), CLS, CLS, torch.tensor([0, 1])) == (0.0, {})
    for name, method in METHODS.items():
        if name != "acgan":
            assert method.d_loss is no_extra_loss and method.g_loss is no_extra_loss
    assert METHODS["acgan"].d_loss is acgan_d_loss and METHODS["acgan"].g_loss is acgan_g_loss
