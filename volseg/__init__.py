"""volseg: 3D volumetric segmentation of CT and MRI with a dimension-generic U-Net model zoo."""

__version__ = "0.1.0"
