import torch
from torch import nn

from streamssl.models import EMPHead, SimSiamPredictor, SimSiamProjector, projection_mlp


def test_emp_head_shape_and_unit_norm():
    head = EMPHead(16, hidden_dim=32, out_dim=8)
    z = head(torch.randn(5, 16))
    assert z.shape == (5, 8)
    assert torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-6)


def test_emp_head_structure():
    head = EMPHead(16, hidden_dim=32, out_dim=8)
    pre = [type(m) for m in head.pre_feature]
    proj = [type(m) for m in head.projection]
    assert pre == [nn.Linear, nn.BatchNorm1d, nn.ReLU]
    assert proj == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head.pre_feature[0].in_features == 16 and head.projection[-1].out_features == 8


def test_emp_head_defaults_are_the_paper_dims():
    head = EMPHead(512)
    assert head.pre_feature[0].out_features == 4096 and head.projection[-1].out_features == 1024


def test_simsiam_projector_ends_with_affine_free_bn():
    proj = SimSiamProjector(16, dim=12, hidden_dim=20)
    out = proj(torch.randn(6, 16))
    assert out.shape == (6, 12)
    last = proj.net[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    linears = [m for m in proj.net if isinstance(m, nn.Linear)]
    assert len(linears) == 3 and all(m.bias is None for m in linears)
    # train-mode BN without affine: each output feature has zero batch mean
    assert torch.allclose(out.mean(0), torch.zeros(12), atol=1e-5)


def test_simsiam_predictor_is_a_bottleneck():
    pred = SimSiamPredictor(12, pred_dim=4)
    assert pred(torch.randn(6, 12)).shape == (6, 12)
    assert pred.net[0].out_features == 4 and pred.net[0].bias is None and pred.net[-1].bias is not None


def test_projection_mlp_is_linear_bn_relu_linear():
    head = projection_mlp(16, 32, 8)
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head[0].in_features == 16 and head[0].out_features == 32 and head[-1].out_features == 8
    assert head(torch.randn(5, 16)).shape == (5, 8)
