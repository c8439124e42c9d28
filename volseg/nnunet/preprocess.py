"""nnU-Net's preprocessing and its inverse, step for step (``DefaultPreprocessor.run_case_npy`` and
``convert_predicted_logits_to_segmentation_with_correct_shape``): transpose, crop to the non-zero box,
normalise per channel, resample to the configuration's spacing; and back.

Arrays are in nnU-Net's axis order, (C, z, y, x) as SimpleITK returns them, with spacing in the same order.
The resampling reproduces ``resample_data_or_seg_to_shape`` (skimage ``resize``, order 3 for data, a separate
low-order pass along an anisotropic axis) and ``resample_torch_fornnunet``, chosen by the plans' names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_fill_holes, map_coordinates

from volseg.data.io import label_dtype
from volseg.models import layers
from volseg.nnunet.model_folder import ModelFolder, NnunetFolderError
from volseg.runtime.predict import probabilities_to_labels

ANISO_THRESHOLD = 3  # nnunetv2.configuration.ANISO_THRESHOLD


@dataclass
class Prepared:
    """A case ready for the sliding window, and what export needs to undo its preprocessing."""

    data: torch.Tensor  # (C, z', y', x') float32, preprocessed
    spacing: list[float]  # the source spacing, transposed
    shape_before_cropping: tuple[int, ...]
    bbox: list[list[int]]
    shape_after_cropping: tuple[int, ...]


# --------------------------------------------------------------------------------------------- cropping


def nonzero_bbox(data: np.ndarray) -> tuple[list[list[int]], np.ndarray]:
    """``crop_to_nonzero``: the box of voxels non-zero in any channel, half-open per axis, and that mask; the
    whole image when every voxel is zero. nnU-Net fills the mask's holes first; that never moves the box (a
    hole lies inside it), so only normalisation by mask needs the filled mask: :func:`filled_in_box`."""
    mask = data[0] != 0
    for c in range(1, data.shape[0]):
        mask |= data[c] != 0
    bbox = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        bbox.append([int(hit[0]), int(hit[-1]) + 1] if hit.size else [0, mask.shape[axis]])
    return bbox, mask


def filled_in_box(mask_in_box: np.ndarray) -> np.ndarray:
    """nnU-Net's hole-filled non-zero mask, cropped to its box, from the unfilled mask cropped to the same box:
    a background region open to the box's border is open to the image's border too (outside the box all is
    background), so filling after cropping fills the same holes. Skipped where nothing is background (a CT)."""
    return mask_in_box if mask_in_box.all() else binary_fill_holes(mask_in_box)


# ----------------------------------------------------------------------------------------- normalisation


def normalize(data: np.ndarray, nonzero: np.ndarray, model: ModelFolder) -> np.ndarray:
    """Per channel, the configuration's scheme with nnU-Net's float32 arithmetic (in place)."""
    cfg = model.configuration
    properties = model.plans.get("foreground_intensity_properties_per_channel", {})
    for c in range(data.shape[0]):
        scheme = cfg["normalization_schemes"][c]
        use_mask = bool(cfg.get("use_mask_for_norm", [False] * data.shape[0])[c])
        image = data[c]
        if scheme == "CTNormalization":
            p = properties.get(str(c))
            if p is None:
                raise NnunetFolderError(
                    f"{model.path / 'plans.json'}: CTNormalization of channel {c} needs "
                    "foreground_intensity_properties_per_channel"
                )
            np.clip(image, p["percentile_00_5"], p["percentile_99_5"], out=image)
            image -= p["mean"]
            image /= max(p["std"], 1e-8)
        elif scheme == "ZScoreNormalization":
            if use_mask:
                mean, std = image[nonzero].mean(), image[nonzero].std()
                image[nonzero] = (image[nonzero] - mean) / max(std, 1e-8)
            else:
                mean, std = image.mean(), image.std()
                image -= mean
                image /= max(std, 1e-8)
        elif scheme == "RescaleTo01Normalization":
            image -= image.min()
            image /= np.clip(image.max(), a_min=1e-8, a_max=None)
        elif scheme == "RGBTo01Normalization":
            image /= 255.0
        elif scheme != "NoNormalization":
            raise NnunetFolderError(f"{model.path / 'plans.json'}: normalization {scheme!r} is not supported")
    return data


# ------------------------------------------------------------------------------------------- resampling


def new_shape(shape, spacing, target) -> np.ndarray:
    """``compute_new_shape``."""
    return np.array([int(round(s / t * n)) for s, t, n in zip(spacing, target, shape)])


def _lowres_axis(spacing) -> np.ndarray:
    return np.where(max(spacing) / np.array(spacing) == 1)[0]


def separate_z(current, new, force: bool | None = None) -> tuple[bool, int | None]:
    """``determine_do_sep_z_and_axis``: whether one axis is resampled on its own, and which."""
    if force is not None:
        do, axis = force, (_lowres_axis(current) if force else None)
    elif max(current) / min(current) > ANISO_THRESHOLD:
        do, axis = True, _lowres_axis(current)
    elif max(new) / min(new) > ANISO_THRESHOLD:
        do, axis = True, _lowres_axis(new)
    else:
        do, axis = False, None
    if axis is not None:
        if len(axis) != 1:
            return False, None
        axis = int(axis[0])
    return do, axis


THREADS = 2  # this module's own threads: scipy's filters release the GIL


def _skimage_resize(image: np.ndarray, shape, order: int) -> np.ndarray:
    """skimage ``resize(image, shape, order, mode="edge", anti_aliasing=False)``, nnU-Net's data resampling;
    a 3D order-3 resize of float64 takes :func:`_cubic_resize`, the same numbers in half the time."""
    if order == 3 and image.ndim == 3 and image.dtype == np.float64 and _zoom_shift() is not None:
        return _cubic_resize(image, tuple(int(s) for s in shape))
    from skimage.transform import resize

    return resize(image, shape, order, mode="edge", anti_aliasing=False)


def _zoom_shift():
    """scipy's interpolation kernel behind ``ndimage.zoom`` (private: None where a scipy lacks it)."""
    try:
        from scipy.ndimage import _nd_image

        return _nd_image.zoom_shift
    except (ImportError, AttributeError):
        return None


def _cubic_resize(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """skimage's order-3 ``resize`` (``ndimage.zoom(mode="nearest", grid_mode=True)``, then clipped to the input's
    range) bit for bit, split across threads: each 1-D line of the spline prefilter is filtered on its own, so
    a block of lines gives the same numbers as the whole, and the interpolation runs by blocks of output rows
    (:func:`_zoom_rows`; tests/test_nnunet.py)."""
    from concurrent.futures import ThreadPoolExecutor

    from scipy.ndimage import spline_filter1d

    if image.shape == shape:  # ndimage.zoom returns its input unfiltered
        return image.copy()
    npad = 12  # ndimage.zoom's pre-padding for mode "nearest"
    coefficients = np.pad(image, npad, mode="edge")  # filtered in place: each line is copied out, then back
    with ThreadPoolExecutor(THREADS) as pool:
        for axis in range(3):
            split = max((a for a in range(3) if a != axis), key=lambda a: coefficients.shape[a])
            bounds = np.linspace(0, coefficients.shape[split], THREADS + 1).astype(int)
            blocks = [(slice(None),) * split + (slice(a, b),) for a, b in zip(bounds[:-1], bounds[1:])]
            list(
                pool.map(
                    lambda b, axis=axis: spline_filter1d(
                        coefficients[b], 3, axis, output=coefficients[b], mode="nearest"
                    ),
                    blocks,
                )
            )
        zoom = np.ascontiguousarray(np.divide(image.shape, shape, dtype=np.float64))
        out = np.empty(shape, dtype=np.float64)
        bounds = np.linspace(0, shape[0], THREADS + 1).astype(int)
        list(pool.map(lambda ab: _zoom_rows(coefficients, zoom, out, *ab, npad), zip(bounds[:-1], bounds[1:])))
    return np.clip(out, image.min(), image.max(), out=out)


def _zoom_rows(coefficients: np.ndarray, zoom: np.ndarray, out: np.ndarray, start: int, stop: int, npad: int):
    """Rows ``start:stop`` of the zoomed volume: scipy's kernel adds the shift to the integer output index
    before zooming, so a shift of ``start`` gives those rows the very numbers of the whole call."""
    if stop > start:
        shift = np.array([float(start), 0.0, 0.0])
        _zoom_shift()(coefficients, zoom, shift, out[start:stop], 3, 0, 0.0, npad, True)  # mode 0: "nearest"


def _linear(data: np.ndarray, shape, dtype_out) -> np.ndarray:
    """skimage's order-1 ``resize`` (edge mode, no anti-aliasing) of every leading slice, in float64, cast to
    ``dtype_out``: torch's (bi/tri)linear with align_corners=False is the same interpolation, 5x faster on
    logits here (5x80x100x60 to 2x: 0.25 s vs 1.3 s; 135 of 19 M float16 values one unit apart, argmax
    identical). One leading slice at a time, so only one is ever held in float64."""
    shape = tuple(int(s) for s in shape)
    out = np.empty((data.shape[0], *shape), dtype=dtype_out)
    for i in range(data.shape[0]):
        tensor = torch.from_numpy(np.asarray(data[i : i + 1], dtype=np.float64))
        out[i] = layers.interpolate(tensor[None], shape)[0, 0].numpy()
    return out


def _nearest_along(data: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``map_coordinates(order=0, mode='nearest')`` along one axis of (C, ...) data on nnU-Net's grid."""
    return np.take(data, _nearest_index(data.shape[1 + axis], size), axis=1 + axis)


def _nearest_index(old: int, size: int) -> np.ndarray:
    """The source index of each of ``size`` samples along an axis of ``old`` (order 0, nnU-Net's grid)."""
    coords = (old / size) * (np.arange(size) + 0.5) - 0.5
    return np.clip(np.floor(coords + 0.5).astype(int), 0, old - 1)


def resample_skimage(
    data: np.ndarray,
    shape,
    current,
    new,
    order: int = 3,
    order_z: int = 0,
    force_separate_z: bool | None = False,
    dtype_out=None,
) -> np.ndarray:
    """``resample_data_or_seg_to_shape`` for images and logits (not label maps). Order 1 (logits) takes the
    float64 torch path of :func:`_linear`; other orders run skimage and scipy as nnU-Net does."""
    do_separate, axis = separate_z(current, new, force_separate_z)
    shape, old = np.array(shape), np.array(data[0].shape)
    dtype_out = dtype_out or data.dtype
    if np.all(old == shape):
        return data
    if order != 1 or (do_separate and order_z != 0):
        return resample_exact(data, shape, do_separate, axis, order, order_z, dtype_out)
    if not do_separate:
        return _linear(data, shape, dtype_out)
    moved = np.moveaxis(np.asarray(data), 1 + axis, 1)
    plane = np.delete(shape, axis)
    in_plane = _linear(moved.reshape(-1, *moved.shape[2:]), plane, np.float64).reshape(*moved.shape[:2], *plane)
    partial = np.moveaxis(in_plane, 1, 1 + axis)
    if old[axis] != shape[axis]:
        partial = _nearest_along(partial, axis, int(shape[axis]))
    return partial.astype(dtype_out)


def linear_argmax(logits: np.ndarray, shape, current, new, force_separate_z: bool | None = False) -> np.ndarray:
    """``argmax(resample_skimage(logits, order=1, order_z=0), 0)`` (the first class of ties) without the C
    resampled channels: channel after channel is resampled in float64 as there, and folded, a few rows at a
    time on two threads, into a running maximum of its values cast as there. Holds one channel in float64 and
    the running maximum instead of C channels, and casts and compares on both cores."""
    from concurrent.futures import ThreadPoolExecutor

    shape = tuple(int(s) for s in shape)
    do_separate, axis = separate_z(current, new, force_separate_z)
    axis = axis if do_separate else 0  # rows are taken along this axis
    labels = np.zeros(shape, dtype=label_dtype(logits.shape[0] - 1))  # class indices
    best = np.empty(shape, dtype=np.float32)  # float16 -> float32 is exact: the comparisons are the cast's
    rows_of = _RowSource(logits, shape, do_separate, axis)
    label_rows, best_rows = np.moveaxis(labels, axis, 0), np.moveaxis(best, axis, 0)
    blocks = [slice(a, a + 8) for a in range(0, shape[axis], 8)]
    with ThreadPoolExecutor(THREADS) as pool:
        for c in range(logits.shape[0]):
            rows_of.open(c)

            def fold(block: slice, c: int = c) -> None:
                values = rows_of(block)
                if c == 0:
                    best_rows[block] = values
                    return
                higher = values > best_rows[block]
                label_rows[block][higher] = c
                np.maximum(best_rows[block], values, out=best_rows[block])

            list(pool.map(fold, blocks))
    return labels


class _RowSource:
    """One channel's resampled values (resample_skimage's order-1 path, cast to the logits' dtype, as float32),
    row block by row block along ``axis``: a trilinear channel is resampled whole into a float64 buffer kept
    for the next channel; with a separate axis each output slice is its nearest source slice resized in-plane
    (float64 bilinear, as :func:`_linear`), computed when its block is asked for."""

    def __init__(self, logits: np.ndarray, shape: tuple[int, ...], do_separate: bool, axis: int):
        self.logits, self.shape, self.do_separate, self.axis = logits, shape, do_separate, axis
        self.same = tuple(logits.shape[1:]) == shape  # resample_skimage returns such logits as they are
        self.nearest = _nearest_index(logits.shape[1 + axis], shape[axis])
        self.plane = tuple(int(n) for n in np.delete(shape, axis))
        self.buffer: torch.Tensor | None = None
        self.rows: np.ndarray | None = None

    def open(self, c: int) -> None:
        channel = self.logits[c]
        if self.same or self.do_separate:
            self.rows = np.moveaxis(channel, self.axis, 0)
            return
        if self.buffer is None:
            self.buffer = torch.empty((1, 1, *self.shape), dtype=torch.float64)
        source = torch.from_numpy(np.asarray(channel, dtype=np.float64))[None, None]
        torch._C._nn.upsample_trilinear3d(source, list(self.shape), False, out=self.buffer)  # F.interpolate's
        self.rows = self.buffer.numpy()[0, 0]

    def __call__(self, block: slice) -> np.ndarray:
        dtype = self.logits.dtype
        if self.same:
            return self.rows[block].astype(np.float32)
        if not self.do_separate:
            return self.rows[block].astype(dtype).astype(np.float32)
        picked = torch.from_numpy(self.rows[self.nearest[block]].astype(np.float64))[:, None]
        return layers.interpolate(picked, self.plane)[:, 0].numpy().astype(dtype).astype(np.float32)


def resample_exact(
    data: np.ndarray, shape, do_separate: bool, axis: int | None, order: int, order_z: int, dtype_out
) -> np.ndarray:
    """``resample_data_or_seg`` line for line: skimage ``resize`` (per slice when one axis is resampled on its
    own, then ``map_coordinates`` of ``order_z`` along it)."""
    shape, old = np.array(shape), np.array(data[0].shape)
    data = data.astype(float, copy=False)
    out = np.zeros((data.shape[0], *shape), dtype=dtype_out)
    if not do_separate:
        for c in range(data.shape[0]):
            out[c] = _skimage_resize(data[c], shape, order)
        return out
    from concurrent.futures import ThreadPoolExecutor

    in_plane = np.delete(shape, axis)
    for c in range(data.shape[0]):
        partial_shape = shape.copy()
        partial_shape[axis] = old[axis]
        partial = np.zeros(partial_shape)

        def resize_slice(i: int, c: int = c, partial: np.ndarray = partial) -> None:
            index = tuple(i if a == axis else slice(None) for a in range(3))
            partial[index] = _skimage_resize(data[c][index], in_plane, order)

        with ThreadPoolExecutor(THREADS) as pool:  # slices are independent: the same numbers, on two cores
            list(pool.map(resize_slice, range(old[axis])))
        if old[axis] == shape[axis]:
            out[c] = partial
            continue
        scale = np.array(partial.shape, float) / shape
        grid = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(float)
        coords = scale[:, None, None, None] * (grid + 0.5) - 0.5
        out[c] = map_coordinates(partial, coords, order=order_z, mode="nearest")
    return out


def resample_torch(
    data,
    shape,
    current,
    new,
    force_separate_z: bool | None = None,
    mode: str = "linear",
    aniso_axis_mode: str = "nearest-exact",
) -> np.ndarray:
    """``resample_torch_fornnunet`` for images and logits."""
    shape = [int(s) for s in shape]
    tensor = torch.as_tensor(data)
    if list(tensor.shape[1:]) == shape:
        return np.asarray(data)
    do_separate, axis = separate_z(current, new, force_separate_z)

    def interpolate(x: torch.Tensor, size, how: str) -> torch.Tensor:
        if list(x.shape[1:]) == list(size):
            return x
        if how == "linear":  # (bi/tri)linear, align_corners=False: volseg.models.layers maps it to the dimension
            return layers.interpolate(x[None].float(), tuple(size))[0]
        return F.interpolate(x[None].float(), tuple(size), mode=how, antialias=False)[0]

    if not do_separate:
        return interpolate(tensor, shape, mode).numpy()
    others = [a for a in range(3) if a != axis]
    moved = tensor.movedim(1 + axis, 1)  # (c, axis, a, b)
    c, n = moved.shape[:2]
    flat = interpolate(moved.reshape(c * n, *moved.shape[2:]), [shape[a] for a in others], mode)
    back = flat.reshape(c, n, *flat.shape[1:]).movedim(1, 1 + axis)
    return interpolate(back, shape, aniso_axis_mode).numpy()


def resample(data: np.ndarray, shape, current, new, fn_name: str, kwargs: dict, source) -> np.ndarray:
    """The plans' resampling function by name, with the plans' arguments."""
    kwargs = {k: v for k, v in kwargs.items() if k != "is_seg"}
    if fn_name in ("resample_data_or_seg_to_shape", "resample_data_or_seg_to_spacing"):
        allowed = {"order", "order_z", "force_separate_z"}
        return resample_skimage(data, shape, current, new, **{k: v for k, v in kwargs.items() if k in allowed})
    if fn_name == "resample_torch_fornnunet":
        allowed = {"force_separate_z", "mode", "aniso_axis_mode"}
        return resample_torch(data, shape, current, new, **{k: v for k, v in kwargs.items() if k in allowed})
    if fn_name == "no_resampling_hack":
        return data
    raise NnunetFolderError(f"{source}: resampling function {fn_name!r} is not supported")


# ---------------------------------------------------------------------------------------------- the case


def preprocess(image: np.ndarray, spacing, model: ModelFolder) -> Prepared:
    """``run_case_npy`` on a (C, z, y, x) image with spacing (z, y, x)."""
    cfg, plans = model.configuration, model.plans
    forward = plans["transpose_forward"]
    data = image.astype(np.float32, copy=False).transpose([0, *[i + 1 for i in forward]])
    spacing = [float(spacing[i]) for i in forward]
    before = tuple(data.shape[1:])
    bbox, mask = nonzero_bbox(data)
    box = tuple(slice(a, b) for a, b in bbox)
    data, mask = data[(slice(None), *box)], mask[box]
    after = tuple(data.shape[1:])
    target = list(cfg["spacing"])
    if len(target) < data.ndim - 1:  # a 2d configuration keeps the spacing between slices
        target = [spacing[0], *target]
    shape = new_shape(after, spacing, target)
    if any(cfg.get("use_mask_for_norm", [])):
        mask = filled_in_box(mask)
    data = normalize(np.ascontiguousarray(data), mask, model)
    data = resample(
        data,
        shape,
        spacing,
        target,
        cfg["resampling_fn_data"],
        cfg.get("resampling_fn_data_kwargs", {}),
        model.path / "plans.json",
    )
    return Prepared(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), spacing, before, bbox, after)


def logits_to_labels(logits: torch.Tensor, prepared: Prepared, model: ModelFolder) -> np.ndarray:
    """``convert_predicted_logits_to_segmentation_with_correct_shape``: logits resampled to the cropped shape,
    to labels (argmax, or regions painted in ``regions_class_order``), un-cropped, transposed back. Returns
    the label values of dataset.json on the (z, y, x) grid of the image as read."""
    cfg, plans = model.configuration, model.plans
    current = list(cfg["spacing"])
    if len(current) < len(prepared.shape_after_cropping):
        current = [prepared.spacing[0], *current]
    labels = model.labels
    values = np.asarray(labels.values, dtype=label_dtype(max(labels.values)))  # class index -> label value
    fn_name, kwargs = cfg["resampling_fn_probabilities"], cfg.get("resampling_fn_probabilities_kwargs", {})
    if labels.regions is None and _is_linear_skimage(fn_name, kwargs) and logits.shape[0] > 1:
        force = kwargs.get("force_separate_z", False)
        classes = linear_argmax(logits.numpy(), prepared.shape_after_cropping, current, prepared.spacing, force)
        return _uncropped(values[classes], prepared, plans)
    resampled = resample(
        logits.numpy(),
        prepared.shape_after_cropping,
        current,
        prepared.spacing,
        fn_name,
        kwargs,
        model.path / "plans.json",
    )
    if labels.regions is not None:
        probabilities = torch.sigmoid(torch.as_tensor(resampled).float()).numpy()
        segmentation = np.zeros(probabilities.shape[1:], dtype=values.dtype)
        for i, value in enumerate(values):
            segmentation[probabilities[i] > 0.5] = value
    else:
        classes = probabilities_to_labels(torch.from_numpy(np.asarray(resampled))).numpy()  # argmax, first of ties
        segmentation = values[classes]
    return _uncropped(segmentation, prepared, plans)


def _is_linear_skimage(fn_name: str, kwargs: dict) -> bool:
    """Whether the plans resample logits with ``resample_data_or_seg_to_shape`` at order 1, nearest along an
    anisotropic axis: nnU-Net's default, which :func:`linear_argmax` reproduces."""
    skimage = fn_name in ("resample_data_or_seg_to_shape", "resample_data_or_seg_to_spacing")
    return skimage and kwargs.get("order", 3) == 1 and kwargs.get("order_z", 0) == 0


def _uncropped(segmentation: np.ndarray, prepared: Prepared, plans: dict) -> np.ndarray:
    """The cropped labels put back into the scan's box, transposed back to the image's axis order."""
    full = np.zeros(prepared.shape_before_cropping, dtype=segmentation.dtype)
    full[tuple(slice(a, b) for a, b in prepared.bbox)] = segmentation
    return full.transpose(plans["transpose_backward"])
