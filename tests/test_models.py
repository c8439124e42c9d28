"""The model zoo: seed fidelity, any-size shapes, gradients, options and errors."""

import importlib.util
import itertools

import pytest
import torch

from volseg.models import build_model, count_parameters, list_models

from .conftest import shared_path

MODELS = ["attunet", "r2attunet", "r2unet", "resunet", "unet", "unetpp"]
TINY = (4, 8, 16)
ODD_SIZE = {2: (13, 11), 3: (11, 9, 7)}


def test_registry_lists_all_six():
    assert list_models() == MODELS


# (model, features, norm, options) -> exact 2D parameter count of the reference code (SEEDS.md)
SEED_COUNTS = [
    ("unet", (32, 64, 128, 256), "batch", {}, 1_949_697),
    ("unet", (32, 64, 128, 256), None, {}, 1_946_881),
    ("unet", (32, 64, 128, 256, 512), "batch", {}, 7_852_545),
    ("unetpp", (32, 64, 128, 256, 512), "batch", {}, 9_163_329),
    ("unetpp", (32, 64, 128, 256, 512), "batch", {"deep_supervision": True}, 9_163_428),
    ("attunet", (64, 128, 256, 512, 1024), "batch", {}, 34_878_573),
    ("r2unet", (64, 128, 256, 512, 1024), "batch", {"recurrent_steps": 2}, 39_091_393),
    ("r2attunet", (64, 128, 256, 512, 1024), "batch", {"recurrent_steps": 2}, 39_442_925),
]


@pytest.mark.parametrize("name,features,norm,options,expected", SEED_COUNTS)
def test_seed_parameter_counts(name, features, norm, options, expected):
    model = build_model(name, 2, 3, 1, features=features, norm=norm, **options)
    assert count_parameters(model) == expected


def test_default_2d_settings_are_the_reference_widths():
    assert count_parameters(build_model("attunet", 2, 3, 1)) == 34_878_573
    assert count_parameters(build_model("unetpp", 2, 3, 1)) == 9_163_329


def _load_seed_module():
    path = shared_path("seeds", "000_extracted_models.py")
    spec = importlib.util.spec_from_file_location("seed000", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_match_the_seed_code_itself():
    seed = _load_seed_module()
    pairs = [
        (seed.UNet_seed1(3, 1, with_bn=True), build_model("unet", 2, 3, 1, features=(32, 64, 128, 256))),
        (seed.UNet_seed2(1), build_model("unet", 2, 3, 1)),
        (seed.NestedUNet(1, deep_supervision=True), build_model("unetpp", 2, 3, 1, deep_supervision=True)),
        (seed.AttU_Net(), build_model("attunet", 2, 3, 1)),
        (seed.R2AttU_Net(t=3), build_model("r2attunet", 2, 3, 1, recurrent_steps=3)),
    ]
    for reference, ours in pairs:
        assert count_parameters(ours) == count_parameters(reference), type(reference).__name__


GRID = list(itertools.product(MODELS, [2, 3], ["batch", "instance", None], ["interp", "transpose"]))


@pytest.mark.parametrize("name,dims,norm,upsample", GRID)
def test_any_size_shape_and_gradients(name, dims, norm, upsample):
    model = build_model(name, dims, 2, 3, features=TINY, norm=norm, upsample=upsample)
    model.train()
    x = torch.randn(1, 2, *ODD_SIZE[dims])  # batch size 1 in train mode
    y = model(x)
    assert y.shape == (1, 3, *ODD_SIZE[dims])
    y.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", MODELS)
def test_sizes_not_divisible_by_depth(name):
    model = build_model(name, 3, 1, 2, features=(4, 8, 16, 32, 64)).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 35, 51, 35)).shape == (1, 2, 35, 51, 35)
    model2d = build_model(name, 2, 1, 2, features=(4, 8, 16, 32, 64)).eval()
    with torch.inference_mode():
        assert model2d(torch.randn(2, 1, 67, 45)).shape == (2, 2, 67, 45)


@pytest.mark.parametrize("name", MODELS)
def test_depth_two_works(name):
    model = build_model(name, 2, 1, 1, features=(4, 8))
    assert model(torch.randn(1, 1, 9, 7)).shape == (1, 1, 9, 7)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dims", [2, 3])
def test_deep_supervision_list_in_training_tensor_in_eval(name, dims):
    model = build_model(name, dims, 1, 2, features=TINY, deep_supervision=True)
    x = torch.randn(2, 1, *ODD_SIZE[dims])
    outputs = model.train()(x)
    assert isinstance(outputs, list) and len(outputs) == len(TINY) - 1
    assert outputs[0].shape == (2, 2, *ODD_SIZE[dims])  # full resolution first
    sizes = [o.shape[2:].numel() for o in outputs]
    assert sizes == sorted(sizes, reverse=True)
    eval_out = model.eval()(x)
    assert isinstance(eval_out, torch.Tensor) and eval_out.shape == outputs[0].shape
    off = build_model(name, dims, 1, 2, features=TINY).train()
    assert isinstance(off(x), torch.Tensor)


@pytest.mark.parametrize("name", ["attunet", "r2attunet"])
def test_attention_maps_exposed(name):
    model = build_model(name, 3, 1, 2, features=TINY).eval()
    x = torch.randn(1, 1, *ODD_SIZE[3])
    logits, maps = model.forward_with_attention(x)
    assert torch.allclose(logits, model(x))
    assert [m.shape[2:] for m in maps] == [(11, 9, 7), (6, 5, 4)]
    assert all(m.shape[1] == 1 and 0 <= m.min() and m.max() <= 1 for m in maps)


def test_recurrent_steps_share_weights():
    one = build_model("r2unet", 2, 1, 1, features=TINY, recurrent_steps=1)
    three = build_model("r2unet", 2, 1, 1, features=TINY, recurrent_steps=3)
    assert count_parameters(one) == count_parameters(three)


@pytest.mark.parametrize("scheme", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_schemes(scheme):
    model = build_model("unet", 2, 1, 1, features=TINY, init=scheme)
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    std = first_conv.weight.std().item()
    assert (std > 0.1) if scheme == "kaiming" else (std < 0.05)  # kaiming fan_in vs the seed's gain 0.02
    assert torch.all(first_conv.bias == 0)


def test_errors_name_the_bad_value_and_the_choices():
    with pytest.raises(ValueError, match=r"'vnet'.*attunet.*unetpp"):
        build_model("vnet", 3, 1, 2)
    with pytest.raises(ValueError, match=r"'recurrent_steps'.*valid options.*upsample"):
        build_model("unet", 3, 1, 2, recurrent_steps=2)
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3, got 4"):
        build_model("unet", 4, 1, 2)
    with pytest.raises(ValueError, match="'layer'"):
        build_model("unet", 2, 1, 2, norm="layer")
    with pytest.raises(ValueError, match="'bicubic'"):
        build_model("attunet", 2, 1, 2, upsample="bicubic")
    with pytest.raises(ValueError, match="'he'"):
        build_model("resunet", 2, 1, 2, init="he")
    with pytest.raises(ValueError, match="at least 2 widths"):
        build_model("unetpp", 2, 1, 2, features=(8,))


def test_resunet_docstring_cites_its_sources():
    from volseg.models.resunet import resunet

    doc = resunet.__doc__
    assert "He et al. 2016" in doc and "Zhang" in doc and "seed 002" in doc


def test_forward_flops_counts_a_convolution_exactly():
    """FLOPs per voxel in the model comparison: 2 x in x out x kernel voxels per output voxel."""
    import torch

    from volseg.models import forward_flops

    conv = torch.nn.Conv3d(1, 2, 3, padding=1, bias=False)
    assert forward_flops(conv, (1, 1, 4, 4, 4)) == 2 * 1 * 2 * 27 * 64
    assert conv.training  # left as it was
