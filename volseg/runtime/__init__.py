"""What runs a network, under every model family: devices and torchrun ranks, checkpoints, the
engines (torch, ONNX Runtime, OpenVINO), ONNX export and the int8 twin, the sliding window, post-processing."""
