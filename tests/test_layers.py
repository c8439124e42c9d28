import re
from pathlib import Path

import pytest
import torch

from volseg.models import layers

PACKAGE = Path(layers.__file__).parent


@pytest.mark.parametrize("bad", [1, 4, "3"])
def test_bad_spatial_dims_names_value(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        layers.conv(bad, 1, 1)


@pytest.mark.parametrize("dims", [2, 3])
def test_layers_follow_spatial_dims(dims):
    x = torch.randn(1, 2, *([5] * dims))
    assert layers.conv(dims, 2, 3)(x).shape == (1, 3, *([5] * dims))
    assert layers.max_pool(dims)(x).shape == (1, 2, *([3] * dims))  # ceil mode keeps the odd edge
    assert layers.conv_transpose(dims, 2, 2)(x).shape == (1, 2, *([10] * dims))
    assert layers.interpolate(x, (7,) * dims).shape == (1, 2, *([7] * dims))
    assert isinstance(layers.norm(None, dims, 2), torch.nn.Identity)
    with pytest.raises(ValueError, match="'group'"):
        layers.norm("group", dims, 2)


def test_match_size_pads_and_crops():
    x = torch.ones(1, 1, 4, 6)
    y = layers.match_size(x, (5, 5))
    assert y.shape == (1, 1, 5, 5)
    assert y[0, 0, 4].sum() == 0 and y[0, 0, :4].sum() == 20


def test_only_layers_module_names_dimensional_classes():
    # MONAI's resampling mode "bilinear" is dimension-generic (grid_sample's name), so only the torch
    # classes and torch's dimension-specific "trilinear" count.
    pattern = re.compile(r"(Conv|ConvTranspose|BatchNorm|InstanceNorm|MaxPool|AvgPool)[123]d|trilinear")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "layers.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, offenders
