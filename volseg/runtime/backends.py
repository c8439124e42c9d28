"""Inference backends for the network forward pass: torch eager, ONNX Runtime and OpenVINO.

Every backend maps a batch (B, C, ...) to logits (B, K, ...) on the CPU side of the caller, so the
predictor's sliding window, blending and inversion are shared. ``auto`` picks the fastest one installed
for the device: torch (with fp16 autocast) on CUDA; OpenVINO, then ONNX Runtime, then torch on CPU.
ONNX exports are cached per checkpoint (content hash, :mod:`volseg.runtime.onnx_export`), so a batch pays the export
once. Precision: fp32 everywhere; int8 through OpenVINO (see :mod:`volseg.runtime.quantize`), and under ``auto`` only
for a model whose int8 agreement with fp32 was measured and recorded; bf16 through OpenVINO on request, or under
``auto`` where its agreement was recorded (:func:`choose_engine` holds the policy), on CPUs that compute bf16 natively (AVX512_BF16 or AMX: nnU-Net's 3 mm CT network 3.35 -> 1.67 s per window on 2 Zen 4
cores); elsewhere reduced precision is emulated, far slower than fp32, so it is refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from volseg.config import Config
from volseg.errors import VolsegError
from volseg.runtime import quantize
from volseg.runtime.onnx_export import checkpoint_onnx, installed

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
LARGE_WINDOW_VOXELS = 1_000_000  # eager torch on the CPU runs a window this large alone (see make_backend)
Backend = Callable[[torch.Tensor], torch.Tensor]


def choose(name: str, device: torch.device) -> str:
    """Resolve ``auto`` (and refuse what cannot run) with a note when falling back."""
    if name not in BACKENDS:
        raise VolsegError(f"backend must be one of {list(BACKENDS)}, got {name!r}")
    if name == "auto":
        if device.type == "cuda":
            return "torch"
        for candidate in ("openvino", "onnxruntime"):
            if installed(candidate):
                return candidate
        log.info("backend auto: neither openvino nor onnxruntime is installed; using torch")
        return "torch"
    if name != "torch" and device.type == "cuda":
        raise VolsegError(f"backend {name!r} runs on the CPU here; use --backend torch (or auto) with CUDA")
    if name != "torch" and not installed(name):
        raise VolsegError(f"backend {name!r} is not installed; pip install 'volseg[{name}]' or use --backend torch")
    return name


def native_bf16() -> bool:
    """Does this CPU compute bf16 in hardware (AVX512_BF16 or AMX-BF16)? Read from /proc/cpuinfo's flags."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def require_bf16(backend: str, device: torch.device) -> None:
    """bf16 runs through OpenVINO on a CPU with native bf16; anything else is one line saying why not."""
    if backend not in ("auto", "openvino") or device.type != "cpu":
        raise VolsegError(f"bf16 runs through OpenVINO on the CPU; use --backend openvino (or auto), not {backend!r}")
    if not native_bf16():
        raise VolsegError(
            "bf16: this CPU has no native bf16 (AVX512_BF16 or AMX), where it runs slower than fp32; use fp32 or int8"
        )


def choose_engine(
    backend: str, precision: str, device: torch.device, int8_record: dict | None, bf16_record: dict | None = None
) -> tuple[str, str]:
    """(backend, precision) for a model of any family: the one precision policy of ``--backend``/``--precision``.

    The backend: ``auto`` is the fastest installed for the device (:func:`choose`). fp32 runs on every backend;
    bf16 and int8 only through OpenVINO on the CPU, bf16 only where the CPU computes it natively. ``auto`` takes
    int8 where the model's int8 twin (``int8_record``, None: it has none) was measured to agree with fp32
    (:func:`~volseg.runtime.quantize.agrees`), else bf16 where the CPU computes it natively and its agreement
    was measured and recorded (``bf16_record``, ``volseg export --precision bf16``), else fp32. The caller finds
    (or makes) the int8 model when int8 is returned."""
    if precision not in quantize.PRECISIONS:
        raise VolsegError(f"precision must be one of {list(quantize.PRECISIONS)}, got {precision!r}")
    if precision in ("bf16", "int8") and backend not in ("auto", "openvino"):
        raise VolsegError(f"{precision} runs through OpenVINO; use --backend openvino (or auto), not {backend!r}")
    if precision == "bf16":
        require_bf16(backend, device)
        return choose("openvino", device), "bf16"
    name = choose(backend, device)
    if precision == "int8" and name != "openvino":
        raise VolsegError(f"int8 runs through OpenVINO on the CPU; here the backend is {name!r} on {device.type}")
    if precision == "int8" or (precision == "auto" and name == "openvino" and quantize.agrees(int8_record)):
        return name, "int8"
    if precision == "auto" and name == "openvino" and quantize.agrees(bf16_record) and native_bf16():
        return name, "bf16"
    return name, "fp32"


def torch_backend(model: nn.Module, device: torch.device) -> Backend:
    """Eager torch under the caller's inference_mode. Channels-last 3D memory was measured slower here
    (pancreas 3D model, one 96x160x160 window on 2 Zen 3 cores: 25.9 s vs 22.2 s), so it is not used."""
    return lambda x: model(x.to(device)).float()


def onnxruntime_backend(onnx_path: Path) -> Backend:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: np.ascontiguousarray(x.cpu().numpy())})[0])


def openvino_backend(model_path: Path, precision: str = "fp32") -> Backend:
    """One OpenVINO model compiled per input shape: a sliding window repeats one shape, and a static
    shape lets OpenVINO plan its memory (2.2 GB instead of 3.2 GB for a 96x160x160 pancreas window).
    The inference precision is always given: OpenVINO's own default is bf16 on CPUs that have it, which
    would silently change fp32's labels; an int8 model's non-quantized layers run in fp32."""
    import openvino as ov

    core = ov.Core()
    source = core.read_model(str(model_path))  # ONNX or IR, read once; each shape compiles a reshaped copy
    compiled: dict[tuple[int, ...], ov.InferRequest] = {}

    def request_for(shape: tuple[int, ...]):
        if shape not in compiled:
            if len(compiled) >= 4:  # slice-wise 2D inference of many sizes: keep memory bounded
                compiled.pop(next(iter(compiled)))
            model = source.clone()
            model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
            hint = "bf16" if precision == "bf16" else "f32"
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
            compiled[shape] = core.compile_model(model, "CPU", config).create_infer_request()
        return compiled[shape]

    def run(x: torch.Tensor) -> torch.Tensor:
        request = request_for(tuple(x.shape))
        request.infer({0: np.ascontiguousarray(x.cpu().numpy())})
        return torch.from_numpy(np.array(request.get_output_tensor(0).data))

    return run


@dataclass
class Engine:
    """A resolved backend: what runs the network, at which precision, and how many windows it takes at once."""

    name: str
    precision: str
    forward: Backend  # batch -> logits
    window_batch: int | None = None  # sliding-window batch it runs fastest at; None: the config's


def make_backend(
    name: str, model: nn.Module, cfg: Config, device: torch.device, checkpoint: Path, precision: str = "fp32"
) -> Engine:
    """The engine for the requested backend and precision (:func:`choose_engine`); a zoo model asked for int8
    without an int8 model beside its checkpoint is quantized once, into the cache."""
    twin = quantize.beside_checkpoint(checkpoint) if precision in ("auto", "int8") else None
    bf16 = quantize.bf16_beside_checkpoint(checkpoint) if precision == "auto" else None
    name, precision = choose_engine(name, precision, device, twin and twin.record, bf16)
    if precision == "bf16":
        return Engine(name, "bf16", openvino_backend(checkpoint_onnx(model, cfg, checkpoint), "bf16"), window_batch=1)
    int8 = (
        (twin or quantize.Int8Model(quantize.cached_int8(model, cfg, checkpoint), None))
        if precision == "int8"
        else None
    )
    if name == "torch":
        # On the CPU a large window runs alone: pancreas 3D model at 96x160x160, 12.6 s per window at batch 1
        # vs 14.5 at batch 2, and one window's activations held (3.3 vs 5.8 GB peak). Small windows batch
        # better (hippocampus 40x56x40: 118 ms per window at batch 2 vs 180 at batch 1).
        large = cfg.model.dims == 3 and math.prod(cfg.sampling.patch_size_3d) >= LARGE_WINDOW_VOXELS
        return Engine(
            name, "fp32", torch_backend(model, device), window_batch=1 if large and device.type == "cpu" else None
        )
    onnx_path = checkpoint_onnx(model, cfg, checkpoint) if int8 is None else None
    if name == "onnxruntime":
        return Engine(name, "fp32", onnxruntime_backend(onnx_path))
    # OpenVINO runs one window at a time fastest (default model: 130 GFLOP/s at batch 1, 88 at batch 4), and
    # one window's activations are then all it holds in memory
    return Engine(name, "int8" if int8 else "fp32", openvino_backend(int8.path if int8 else onnx_path), window_batch=1)
