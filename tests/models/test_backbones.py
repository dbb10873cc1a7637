import pytest
import torch
from torch import nn

from streamssl.errors import ConfigError
from streamssl.models import BACKBONES, build_backbone

DIMS = {"resnet18_cifar": 512, "resnet18": 512, "resnet50": 2048, "cnn4": 256, "cnn4_wide": 512}


def test_every_registered_backbone_is_covered():
    assert set(BACKBONES) == set(DIMS)


@pytest.mark.parametrize("name,dim", DIMS.items())
def test_output_is_pooled_feature_of_declared_dim(name, dim):
    torch.manual_seed(0)  # weight init only; the models themselves draw nothing at forward time
    net, out_dim = build_backbone(name)
    assert out_dim == dim
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, dim) and torch.isfinite(out).all()


def test_cifar_stem_keeps_resolution():
    net, _ = build_backbone("resnet18_cifar")
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, nn.Identity)
    imagenet, _ = build_backbone("resnet18")
    assert imagenet.conv1.kernel_size == (7, 7) and isinstance(imagenet.maxpool, nn.MaxPool2d)


def test_cnn4_has_four_conv_bn_blocks():
    net, _ = build_backbone("cnn4")
    kinds = [type(m) for m in net.modules()]
    assert kinds.count(nn.Conv2d) == 4 and kinds.count(nn.BatchNorm2d) == 4


def test_unknown_name_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="resnet19"):
        build_backbone("resnet19")

