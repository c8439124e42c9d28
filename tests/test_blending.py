"""Windows are blended as logits, as MONAI and nnU-Net blend them, and activated once at the end."""

from __future__ import annotations

import torch
from monai.inferers import sliding_window_inference

from volseg.config import load_config
from volseg.models.registry import build_model
from volseg.runtime.predict import predict_probabilities


def _setting(labels: int):
    cfg = load_config(None, ["model.dims=3", "sampling.patch_size_3d=[16, 16, 16]", "sampling.batch_size_3d=2"])
    torch.manual_seed(0)
    model = build_model("unet", 3, 1, labels, features=[4, 8]).eval()
    image = torch.randn(1, 30, 37, 21)  # several overlapping windows along every axis
    return cfg, model, image


def test_probabilities_are_monais_blended_logits_activated():
    cfg, model, image = _setting(labels=3)
    ours = predict_probabilities(model, image, cfg, torch.device("cpu"), overlap=0.5)
    with torch.inference_mode():
        logits = sliding_window_inference(image[None], (16, 16, 16), 2, model, overlap=0.5, mode="gaussian")
    assert torch.allclose(ours, torch.softmax(logits, 1)[0], atol=1e-5)
    # blending probabilities instead gives something else where windows overlap: the test can tell them apart
    with torch.inference_mode():
        blended_probs = sliding_window_inference(
            image[None], (16, 16, 16), 2, lambda x: torch.softmax(model(x), 1), overlap=0.5, mode="gaussian"
        )
    assert not torch.allclose(ours, blended_probs[0], atol=1e-5)


def test_one_channel_models_take_the_sigmoid_of_blended_logits():
    cfg, model, image = _setting(labels=1)
    ours = predict_probabilities(model, image, cfg, torch.device("cpu"), overlap=0.5)
    with torch.inference_mode():
        logits = sliding_window_inference(image[None], (16, 16, 16), 2, model, overlap=0.5, mode="gaussian")
    assert torch.allclose(ours, torch.sigmoid(logits)[0], atol=1e-5)
