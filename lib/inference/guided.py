"""Image-guided upsampling of probability maps to the input grid.

The network works on an isotropic grid (2.5 mm for the bundled model) while a CT's input
grid is often three times finer in-plane; linear interpolation of the probabilities then
places every boundary to within a working voxel at best. A guided filter (He, Sun and Tang,
"Guided image filtering", TPAMI 2013) models the probability in each small window as a
linear function of the image, ``p ~ a * I + b``; its fast form (He and Sun, "Fast guided
filter", 2015) fits ``a`` and ``b`` on the coarse grid and applies them to the fine image,
so an organ's edge follows the input's own intensity edge where the window holds one, and
stays the interpolated probability where it does not (``a`` near 0: no contrast to follow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.boxes import bounding_box
from ..data.preprocess import WorkingVolume, axis_aligned_map, separable_resample, to_original_grid

BAND = 0.02  # a map is guided only around voxels with BAND < p < 1 - BAND


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^3 window, edges replicated: (N, X, Y, Z) -> same."""
    if radius == 0:
        return x
    k = 2 * radius + 1
    return F.avg_pool3d(F.pad(x.unsqueeze(1), (radius,) * 6, mode="replicate"), k, stride=1).squeeze(1)


def guided_coefficients(p: torch.Tensor, guide: torch.Tensor, radius: int, eps: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided filter's window-averaged linear model on one grid.

    Args:
        p: (K, X, Y, Z) probabilities.
        guide: (X, Y, Z) normalised image on the same grid.
        radius: window radius in voxels.
        eps: regularisation of the slope (in squared guide units): a window whose image
            varies less than about sqrt(eps) gets a slope near 0.

    Returns:
        (A, B), each (K, X, Y, Z), such that ``A * guide + B`` is the filtered map; applied
        to a finer image (with A and B interpolated onto its grid) it is the fast guided
        filter's upsampling.
    """
    g = guide.float().unsqueeze(0).expand_as(p)
    mean_g, mean_p = box_mean(g, radius), box_mean(p, radius)
    var_g = box_mean(g * g, radius) - mean_g * mean_g
    cov = box_mean(g * p, radius) - mean_g * mean_p
    a = cov / (var_g.clamp(min=0) + eps)
    b = mean_p - a * mean_g
    return box_mean(a, radius), box_mean(b, radius)


def band_box(p: torch.Tensor, margin: int) -> tuple[slice, slice, slice] | None:
    """Bounding box of the voxels of a (X, Y, Z) map with BAND < p < 1 - BAND, grown by
    ``margin`` voxels; None when there are none (the map is 0 or 1 everywhere)."""
    return bounding_box(((p > BAND) & (p < 1 - BAND)).cpu().numpy(), margin)


def box_on_input_grid(axes: list[tuple[int, torch.Tensor]], box: tuple[slice, slice, slice]
                      ) -> tuple[tuple[slice, slice, slice], list[tuple[int, torch.Tensor]]] | None:
    """The input-grid voxels whose working-grid coordinates fall inside ``box`` (a working
    grid box), and their coordinates relative to the box, for ``separable_resample`` of the
    box alone. ``axes`` from ``axis_aligned_map``. None when no input voxel falls inside."""
    dst, sub = [], []
    for w, coords in axes:
        lo, hi = box[w].start, box[w].stop - 1
        inside = ((coords >= lo) & (coords <= hi)).nonzero().flatten()
        if inside.numel() == 0:
            return None
        first, last = int(inside.min()), int(inside.max()) + 1
        dst.append(slice(first, last))
        sub.append((w, coords[first:last] - lo))
    return tuple(dst), sub


def guided_upsample(p: torch.Tensor, p_input: torch.Tensor, vol: WorkingVolume, guide: torch.Tensor,
                    radius: int, eps: float) -> torch.Tensor:
    """Replace the linearly interpolated probabilities around each map's boundary by the
    fast guided filter's.

    Args:
        p: (K, X, Y, Z) probabilities on the working grid (after the clean-up).
        p_input: (K, X0, Y0, Z0) the same, linearly interpolated onto the input grid;
            overwritten in place (and returned).
        vol: the WorkingVolume (working-grid guide ``vol.image`` and both grids' affines).
        guide: (X0, Y0, Z0) the input image, normalised as ``vol.image`` was.
        radius, eps: as ``guided_coefficients``.

    Returns:
        ``p_input``, (K, X0, Y0, Z0) float32 in [0, 1], unchanged away from every boundary.
        Only the box around a map's boundary band is filtered and resampled.
    """
    out = p_input
    work_guide = vol.image[0]
    axes = axis_aligned_map(vol.affine, vol.original_affine, vol.original_shape)
    for k in range(p.shape[0]):
        box = band_box(p[k], margin=2 * radius + 1)
        if box is None:
            continue
        a, b = guided_coefficients(p[k][box].unsqueeze(0), work_guide[box], radius, eps)
        if axes is None:  # an oblique grid pair: resample the whole coefficient maps
            full_a, full_b = torch.zeros_like(p[k]), p[k].clone()
            full_a[box], full_b[box] = a[0], b[0]
            ab = to_original_grid(torch.stack([full_a, full_b]), vol)
            out[k] = (ab[0] * guide + ab[1]).clamp(0, 1)
            continue
        mapped = box_on_input_grid(axes, box)
        if mapped is None:
            continue
        dst, sub = mapped
        ab = separable_resample(torch.cat([a, b]), sub)
        out[k][dst] = (ab[0] * guide[dst] + ab[1]).clamp(0, 1)
    return out
