"""Preprocessing, defined once for training, validation and inference: load a NIfTI
volume, reorient to RAS, resample to the isotropic working spacing, normalise the
intensities by modality, add physical-coordinate channels, and map results back to the
original grid."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage, Orientation, Spacing, SpatialResample

logger = logging.getLogger(__name__)

CT_WINDOW = (-250.0, 400.0)  # HU mapped onto [-1, 1]; air and bone saturate
COORD_SCALE_MM = 100.0


class ImageError(ValueError):
    """An input volume that cannot be segmented (unreadable, not 3D, empty)."""


def load_volume(path: str, label: bool = False) -> MetaTensor:
    """Read a NIfTI (or any MONAI-readable) file into a channel-first MetaTensor (1, X, Y, Z)."""
    try:
        img = LoadImage(image_only=True, ensure_channel_first=True, reader="NibabelReader")(str(path))
    except Exception as e:  # noqa: BLE001 - MONAI raises many types for unreadable files
        raise ImageError(f"cannot read image {path!r}: {e}") from e
    return check_volume(img, str(path), label=label)


def volume_fingerprint(img: torch.Tensor) -> str:
    """Content hash of a loaded volume: its shape and voxel values (float32), not its file
    name, path or compression. Identifies the same scan under another name (phantom pools
    drawn with different seeds all number their files from ``phantom_0000``).
    (1, X, Y, Z) -> 16 hex digits."""
    a = np.ascontiguousarray(torch.as_tensor(img).detach().cpu().numpy().astype(np.float32, copy=False))
    h = hashlib.sha1(repr(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def check_volume(img: MetaTensor, name: str = "image", label: bool = False) -> MetaTensor:
    """Validate a (1, X, Y, Z) volume: 3D, at least 8 voxels a side, finite values."""
    if img.ndim == 5 and img.shape[-1] == 1:  # (1, X, Y, Z, 1) from some writers
        img = img[..., 0]
    if img.ndim != 4 or img.shape[0] != 1:
        raise ImageError(f"{name}: expected a single-channel 3D volume, got shape {tuple(img.shape)}")
    if min(img.shape[1:]) < 8:
        raise ImageError(f"{name}: volume too small {tuple(img.shape[1:])} (need >= 8 voxels per axis)")
    if not label and not torch.isfinite(img).all():
        raise ImageError(f"{name}: contains NaN or infinite values")
    return img


CT_AIR_HU = -500.0  # below this at the 1st percentile: air around the body, so CT
CT_FAT_HU = -50.0  # below this at the 1st percentile, with dense tissue too: fat, so CT
CT_DENSE_HU = 150.0  # the 99.5th percentile of a CT reaches contrast or bone


def guess_modality(values: np.ndarray | torch.Tensor) -> str:
    """"CT" when the intensities look like Hounsfield units, else "MR".

    Air around the body (the 1st percentile below -500) marks a CT; so does, in a scan
    cropped inside the body, fat (the 1st percentile below -50) together with contrast or
    bone (the 99.5th percentile above 150). MR intensities are not negative by tens, not
    even z-scored ones, so neither rule fires for them. Any shape -> "CT" or "MR".
    """
    v = torch.as_tensor(values).flatten().float()
    if v.numel() > 200_000:
        v = v[:: v.numel() // 200_000]
    low, high = (float(q) for q in torch.quantile(v, torch.tensor([0.01, 0.995])))
    return "CT" if low < CT_AIR_HU or (low < CT_FAT_HU and high > CT_DENSE_HU) else "MR"


def normalize_intensity(img: torch.Tensor, modality: str) -> torch.Tensor:
    """Map intensities onto about [-1, 1].

    CT: a fixed soft-tissue window in HU (CT_WINDOW), so absolute densities stay meaningful.
    MR: robust per image, the 0.5th-99.5th percentiles of the non-zero voxels.
    Shapes: any -> same, float32.
    """
    img = img.float()
    if modality == "CT":
        lo, hi = CT_WINDOW
    elif modality == "MR":
        v = img[img != 0].flatten()
        if v.numel() == 0:
            return torch.zeros_like(img)
        if v.numel() > 500_000:
            v = v[:: v.numel() // 500_000]
        lo, hi = float(torch.quantile(v, 0.005)), float(torch.quantile(v, 0.995))
        if hi - lo < 1e-6:
            hi = lo + 1.0
    else:
        raise ValueError(f"modality must be 'CT' or 'MR', got {modality!r}")
    return (img.clamp(lo, hi) - lo) / (hi - lo) * 2.0 - 1.0


def coordinate_channels(shape: tuple[int, int, int], spacing: float, offset: tuple[int, int, int] = (0, 0, 0),
                        full_shape: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Physical RAS coordinates of each voxel, relative to the volume's centre, in 100 mm.

    Args:
        shape: (X, Y, Z) of the block wanted.
        spacing: working spacing in mm.
        offset: index of the block's first voxel in the full volume.
        full_shape: shape of the full volume (defaults to ``shape``).

    Returns:
        (3, X, Y, Z) float32. In RAS+ channel 0 grows towards the patient's right, so
        left structures have smaller values than right ones.
    """
    full_shape = full_shape or shape
    axes = [
        (torch.arange(n, dtype=torch.float32) + o - (f - 1) / 2.0) * spacing / COORD_SCALE_MM
        for n, o, f in zip(shape, offset, full_shape)
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


@dataclass
class WorkingVolume:
    """A volume on the working grid, with what is needed to go back.

    Attributes:
        image: (1, X, Y, Z) normalised intensities on the working grid (RAS, isotropic).
        affine: (4, 4) affine of the working grid.
        original_affine: (4, 4) affine of the input.
        original_shape: (X0, Y0, Z0) of the input.
        modality: "CT" or "MR".
    """

    image: torch.Tensor
    affine: torch.Tensor
    original_affine: torch.Tensor
    original_shape: tuple[int, int, int]
    modality: str

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(torch.linalg.det(self.original_affine[:3, :3].double())))


def to_working_grid(img: MetaTensor, spacing: float, label: bool = False) -> MetaTensor:
    """Reorient to RAS and resample to isotropic ``spacing`` (nearest for labels)."""
    img = Orientation(axcodes="RAS")(img)
    return Spacing(pixdim=(spacing,) * 3, mode="nearest" if label else "bilinear", dtype=np.float32)(img)


def prepare(img: MetaTensor, spacing: float, modality: str = "auto") -> WorkingVolume:
    """Load-time preprocessing shared by training and inference. (1, X0, Y0, Z0) -> WorkingVolume."""
    img = check_volume(img)
    if modality == "auto":
        modality = guess_modality(img)
    original_affine = torch.as_tensor(img.affine, dtype=torch.float64).clone()
    original_shape = tuple(int(s) for s in img.shape[1:])
    work = to_working_grid(img, spacing)
    image = normalize_intensity(work.as_tensor(), modality)
    return WorkingVolume(image=image, affine=torch.as_tensor(work.affine, dtype=torch.float64),
                         original_affine=original_affine, original_shape=original_shape, modality=modality)


def soft_label_maps(lab: MetaTensor, vol: WorkingVolume, margin: int = 2) -> dict[int, torch.Tensor]:
    """Each label's share of every working-grid voxel, for soft training targets.

    The nearest-neighbour label map on the working grid moves a boundary by up to half a
    working voxel (1 mm at 2 mm); linear interpolation of each label's indicator keeps its
    position to a fraction of a voxel, the way the image itself is resampled. Done axis by
    axis on the label's bounding box (``separable_resample``; ``prepare`` keeps even an
    oblique input's directions, so its grids always allow it); a grid pair at an angle
    would go through MONAI's ``SpatialResample``.

    Args:
        lab: (1, X0, Y0, Z0) label map with the input's affine.
        vol: the image's WorkingVolume (its working grid is the target grid).
        margin: background voxels kept around each label's box (the border value must be 0).

    Returns:
        {label value: (X, Y, Z) uint8 share x 255} for every non-zero value of ``lab``.
    """
    values = (lab.as_tensor() if isinstance(lab, MetaTensor) else torch.as_tensor(lab))[0].round().long()
    shape = tuple(int(s) for s in vol.image.shape[1:])
    axes = axis_aligned_map(torch.as_tensor(lab.affine, dtype=torch.float64), vol.affine, shape)
    out: dict[int, torch.Tensor] = {}
    for v in torch.unique(values).tolist():
        if v == 0:
            continue
        ind = values == v
        if axes is None:
            share = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=torch.float32)(
                MetaTensor(ind[None].float(), affine=lab.affine), dst_affine=vol.affine, spatial_size=shape).as_tensor()[0]
        else:
            idx = ind.nonzero()
            lo = (idx.min(0).values - margin).clamp(min=0)
            hi = torch.minimum(idx.max(0).values + margin + 1, torch.tensor(ind.shape))
            box = ind[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][None].float()
            # points outside the box take its border value: 0 when the margin fits, else the
            # volume's own border, as for the full map
            share = separable_resample(box, [(w, c - float(lo[w])) for w, c in axes])[0]
        out[int(v)] = (share.clamp(0, 1) * 255).round().to(torch.uint8)
    return out


def to_original_grid(values: torch.Tensor, vol: WorkingVolume, mode: str = "bilinear") -> torch.Tensor:
    """Resample working-grid maps back onto the input's grid.

    When the input grid's axes are parallel to the working grid's (any order and
    direction; always so for a working grid made by ``prepare``, which keeps even an
    oblique input's directions), linear interpolation is done axis by axis
    (``separable_resample``): the same values as a full sampling grid, an order of
    magnitude faster. Other grid pairs, and "nearest", go through MONAI's
    ``SpatialResample``. Border padding in both.

    Args:
        values: (N, X, Y, Z) maps on the working grid (probabilities, uncertainties).
        vol: the WorkingVolume they belong to.
        mode: "bilinear" or "nearest".

    Returns:
        (N, X0, Y0, Z0) float32 on the original grid.
    """
    axes = axis_aligned_map(vol.affine, vol.original_affine, vol.original_shape)
    if mode == "bilinear" and axes is not None:
        return separable_resample(values.float(), axes)
    src = MetaTensor(values.float(), affine=vol.affine)
    out = SpatialResample(mode=mode, padding_mode="border", dtype=torch.float32)(
        src, dst_affine=vol.original_affine, spatial_size=vol.original_shape)
    return out.as_tensor()


def axis_aligned_map(src_affine: torch.Tensor, dst_affine: torch.Tensor, dst_shape: tuple[int, int, int],
                     tol: float = 1e-6) -> list[tuple[int, torch.Tensor]] | None:
    """For each destination axis a: the source axis it runs along and the source voxel
    coordinate of each of its ``dst_shape[a]`` voxels. None when an axis of the destination
    grid is not parallel to one of the source grid (an oblique input)."""
    m = torch.linalg.inv(torch.as_tensor(src_affine, dtype=torch.float64)) @ torch.as_tensor(dst_affine, dtype=torch.float64)
    rot = m[:3, :3]
    scale = rot.abs().max()
    axes: list[tuple[int, torch.Tensor]] = []
    for a in range(3):
        col = rot[:, a]
        big = (col.abs() > tol * scale).nonzero().flatten().tolist()
        if len(big) != 1:
            return None
        w = big[0]
        axes.append((w, col[w] * torch.arange(dst_shape[a], dtype=torch.float64) + m[w, 3]))
    if len({w for w, _ in axes}) != 3:
        return None
    return axes


def separable_resample(values: torch.Tensor, axes: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """Linear interpolation of (N, X, Y, Z) maps at the coordinates of ``axis_aligned_map``,
    one axis at a time (trilinear interpolation is the product of three 1D ones); points
    outside the source take the border value. Returns (N, X0, Y0, Z0).

    The axes are taken from the one that shrinks most to the one that grows most, so the
    intermediate maps stay small, and each is interpolated as the first dimension, where a
    gather copies whole contiguous slabs (on a 384 x 304 x 68 CT, about 9x faster than gathering
    along the maps' own dimensions in their order; docs/benchmarks.md)."""
    out = values
    for w, coords in sorted(axes, key=lambda ax: ax[1].numel() / values.shape[1 + ax[0]]):
        n = out.shape[1 + w]
        c = coords.clamp(0, n - 1)
        i0 = c.floor().long().clamp(max=n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        front = out.movedim(1 + w, 0).contiguous()
        t = (c - i0).to(out.dtype).view(-1, *([1] * (front.dim() - 1)))
        out = torch.lerp(front.index_select(0, i0), front.index_select(0, i1), t).movedim(0, 1 + w)
    return out.permute(0, *(1 + w for w, _ in axes)).contiguous()


def pad_to_multiple(x: torch.Tensor, multiple: int = 8) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pad the last three dims at the end (edge values) to multiples of ``multiple``.

    Returns the padded tensor and the original (X, Y, Z) to crop back to.
    """
    shape = tuple(int(s) for s in x.shape[-3:])
    pads = [(-s) % multiple for s in shape]
    if any(pads):
        lead = x.shape[:-3]
        x5 = x.reshape(1, -1, *shape)
        x5 = torch.nn.functional.pad(x5, (0, pads[2], 0, pads[1], 0, pads[0]), mode="replicate")
        x = x5.reshape(*lead, *x5.shape[-3:])
    return x, shape
