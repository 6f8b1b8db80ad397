"""Synthetic abdominal CT phantoms: the offline stand-in for labelled abdominal CT.

A phantom is a 3D CT-like volume in Hounsfield units with a label map of 14 structures
(see :data:`LABELS`). The anatomy is drawn analytically in *canonical* millimetre
coordinates of a standard adult (origin at the body centre in-plane, z = 0 near the renal
hila) and sampled on the voxel grid of each phantom:

* body outline (randomly deformed superellipse) with subcutaneous fat, a muscle wall,
  paraspinal and psoas muscles, ribs, a CT table and air outside;
* the spine: vertebral bodies (cancellous bone with a cortical rim), intervertebral discs,
  posterior elements around a CSF-filled canal;
* a domed diaphragm with the lung bases (air HU) and the heart above it;
* liver (with portal / hepatic vein branches), spleen, kidneys (cortex, medulla, sinus
  fat), aorta (with iliac bifurcation), IVC, pancreas, gallbladder (sometimes a stone),
  stomach (wall, fluid and air) and unlabelled bowel loops in the mesenteric fat;
* liver lesions (hypodense, 5-40 mm) and kidney cysts (0-15 HU) in some volumes;
  missing organs (splenectomy, nephrectomy, cholecystectomy) and z-crops of the field of
  view in others.

Every organ is a superellipsoid / tube whose implicit function is perturbed by a
low-frequency random Fourier field, so shapes differ smoothly between phantoms. HU values
depend on the contrast phase (non-contrast, arterial, venous), with a small intra-organ
texture, partial-volume blur and correlated Gaussian noise (sd 5-50 HU).

Orientation: arrays are indexed ``[x, y, z]`` with a diagonal RAS+ affine of positive
spacings: +x = towards the subject's right, +y = anterior, +z = superior (as in MNI
space, where the left hemisphere has negative x). Hence the liver, IVC and right kidney
lie at larger world x than the spleen, stomach and left kidney.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from lib.data.vocab import LABELS_FILE, LabelEntry, Vocabulary

log = logging.getLogger(__name__)

PHANTOMS_FILE = "phantoms.json"
#: fraction of "hard" phantoms in a pool (the rest are common easy cases)
DEFAULT_HARD_FRACTION = 0.4
PHASES = ("non-contrast", "arterial", "venous")

# --------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------
LIVER, SPLEEN, KIDNEY_L, KIDNEY_R, AORTA, IVC, VERTEBRAE = 1, 2, 3, 4, 5, 6, 7
LUNG_L, LUNG_R, LIVER_LESION, KIDNEY_CYST, PANCREAS, GALLBLADDER, STOMACH = 8, 9, 10, 11, 12, 13, 14

#: name -> (index or parts, synonyms, eval_synonyms)
LABELS: dict[str, tuple[int | list[int], list[str], list[str]]] = {
    "liver": (LIVER, [
        "the liver", "hepatic parenchyma", "liver parenchyma", "whole liver", "liver organ",
        "hepar", "the liver in the abdomen", "liver segmentation"],
        ["entire hepatic organ", "liver (whole organ)"]),
    "spleen": (SPLEEN, [
        "the spleen", "splenic parenchyma", "spleen organ", "the spleen in the abdomen",
        "lien", "splenic tissue", "whole spleen"],
        ["spleen (entire)", "the patient's spleen"]),
    "left kidney": (KIDNEY_L, [
        "kidney (left)", "the left kidney", "left renal parenchyma", "lt kidney", "l kidney",
        "left kidney organ", "kidney left", "left-sided kidney"],
        ["the kidney on the left", "left renal organ"]),
    "right kidney": (KIDNEY_R, [
        "kidney (right)", "the right kidney", "right renal parenchyma", "rt kidney",
        "r kidney", "right kidney organ", "kidney right", "right-sided kidney"],
        ["the kidney on the right", "right renal organ"]),
    "aorta": (AORTA, [
        "the aorta", "abdominal aorta", "aortic lumen", "descending aorta", "aortic vessel",
        "the main artery", "aorta vessel"],
        ["the aortic artery", "aorta (abdominal part)"]),
    "inferior vena cava": (IVC, [
        "ivc", "the ivc", "vena cava", "inferior caval vein", "the inferior vena cava",
        "vena cava inferior", "caval vein"],
        ["inf. vena cava", "vena cava (inferior)"]),
    "vertebrae": (VERTEBRAE, [
        "vertebra", "the vertebrae", "spine", "vertebral column", "spinal column",
        "vertebral bodies", "lumbar spine", "thoracolumbar vertebrae", "backbone"],
        ["spinal vertebrae", "the bones of the spine"]),
    "left lung": (LUNG_L, [
        "lung (left)", "the left lung", "left lung base", "left pulmonary parenchyma",
        "lt lung", "left lower lobe", "l lung"],
        ["the lung on the left", "left lung field"]),
    "right lung": (LUNG_R, [
        "lung (right)", "the right lung", "right lung base", "right pulmonary parenchyma",
        "rt lung", "right lower lobe", "r lung"],
        ["the lung on the right", "right lung field"]),
    "liver lesion": (LIVER_LESION, [
        "tumor in the liver", "hepatic lesion", "liver tumour", "liver tumor", "liver mass",
        "hepatic tumor", "liver metastasis", "focal liver lesion", "hypodense liver lesion"],
        ["lesion of the liver", "hepatic mass"]),
    "kidney cyst": (KIDNEY_CYST, [
        "renal cyst", "cyst in the kidney", "kidney cysts", "renal cysts",
        "simple renal cyst", "cystic kidney lesion", "bosniak cyst"],
        ["cyst of the kidney", "fluid-filled renal lesion"]),
    "pancreas": (PANCREAS, [
        "the pancreas", "pancreatic parenchyma", "pancreas gland", "pancreatic gland",
        "pancreatic tissue", "the pancreas in the abdomen", "whole pancreas"],
        ["pancreas (head to tail)", "the pancreatic organ"]),
    "gallbladder": (GALLBLADDER, [
        "gall bladder", "the gallbladder", "gb", "cholecyst", "gallbladder lumen",
        "biliary vesicle", "gall-bladder"],
        ["the gall bladder organ", "vesica biliaris"]),
    "stomach": (STOMACH, [
        "the stomach", "gastric", "stomach organ", "gastric lumen and wall", "gaster",
        "the stomach in the abdomen", "gastric body", "whole stomach"],
        ["stomach (whole)", "the gastric organ"]),
    "kidneys": ([KIDNEY_L, KIDNEY_R], [
        "both kidneys", "the kidneys", "bilateral kidneys", "renal parenchyma",
        "left and right kidney", "kidney", "renal"],
        ["the two kidneys", "kidneys bilaterally"]),
    "lungs": ([LUNG_L, LUNG_R], [
        "both lungs", "the lungs", "lung bases", "bilateral lungs", "lung",
        "pulmonary parenchyma", "left and right lung"],
        ["the two lungs", "lungs bilaterally"]),
}
INDEX_TO_NAME: dict[int, str] = {v[0]: k for k, v in LABELS.items() if isinstance(v[0], int)}


def phantom_vocabulary() -> Vocabulary:
    """The vocabulary of the phantom label maps (14 single labels + "kidneys", "lungs")."""
    entries: dict[str, LabelEntry] = {}
    for name, (idx, syn, ev) in LABELS.items():
        composite = isinstance(idx, list)
        entries[name] = LabelEntry(
            name=name,
            indices=tuple(idx) if composite else (idx,),
            modality="CT",
            synonyms=tuple(syn),
            eval_synonyms=tuple(ev),
            composite=composite,
        )
    return Vocabulary(entries)


# --------------------------------------------------------------------------------------
# Tissues and Hounsfield units per phase: (non-contrast, arterial, venous)
# --------------------------------------------------------------------------------------
#: tissue -> (HU per phase, fine texture sd, low-frequency heterogeneity sd per phase)
TISSUES: dict[str, tuple[tuple[float, float, float], float, tuple[float, float, float]]] = {
    "air": ((-1000, -1000, -1000), 4, (0, 0, 0)),
    "fat": ((-105, -105, -105), 8, (4, 4, 4)),
    "visceral_fat": ((-95, -95, -95), 10, (6, 6, 6)),
    "muscle": ((50, 58, 62), 6, (3, 3, 3)),
    "table": ((-350, -350, -350), 20, (0, 0, 0)),
    "table_shell": ((150, 150, 150), 20, (0, 0, 0)),
    "lung": ((-860, -860, -860), 25, (20, 20, 20)),
    "lung_vessel": ((-150, -150, -150), 60, (0, 0, 0)),
    "heart": ((42, 260, 140), 6, (0, 15, 5)),
    "liver": ((58, 78, 118), 6, (3, 3, 4)),
    "liver_vessel": ((42, 95, 175), 6, (0, 5, 5)),
    "spleen": ((48, 115, 122), 5, (2, 28, 3)),
    "kidney_cortex": ((35, 205, 170), 7, (2, 8, 5)),
    "kidney_medulla": ((30, 80, 160), 7, (2, 8, 5)),
    "renal_sinus": ((-70, -70, -70), 15, (10, 10, 10)),
    "aorta": ((45, 310, 155), 5, (0, 10, 5)),
    "iliac": ((45, 290, 150), 5, (0, 10, 5)),
    "ivc": ((42, 75, 145), 6, (0, 20, 8)),
    "pancreas": ((42, 110, 95), 10, (3, 5, 5)),
    "bile": ((10, 10, 10), 4, (2, 2, 2)),
    "gb_wall": ((38, 70, 75), 4, (0, 0, 0)),
    "gallstone": ((420, 420, 420), 40, (0, 0, 0)),
    "stomach_wall": ((40, 95, 90), 6, (3, 5, 5)),
    "stomach_fluid": ((18, 18, 18), 6, (6, 6, 6)),
    "gas": ((-930, -930, -930), 25, (10, 10, 10)),
    "bowel_wall": ((38, 80, 88), 8, (5, 5, 5)),
    "bowel_content": ((20, 20, 20), 12, (15, 15, 15)),
    "bone_cortex": ((750, 750, 750), 50, (30, 30, 30)),
    "bone_cancellous": ((230, 230, 230), 30, (25, 25, 25)),
    "rib": ((480, 480, 480), 40, (20, 20, 20)),
    "disc": ((85, 85, 85), 6, (0, 0, 0)),
    "csf": ((15, 15, 15), 4, (0, 0, 0)),
    "cyst": ((8, 8, 8), 3, (1, 1, 1)),
}
_TISSUE_NAMES = list(TISSUES)
T = {name: i for i, name in enumerate(_TISSUE_NAMES)}


# --------------------------------------------------------------------------------------
# Data class
# --------------------------------------------------------------------------------------
@dataclass
class Phantom:
    """One synthetic CT volume.

    Attributes:
        image: (X, Y, Z) int16 Hounsfield units.
        label: (X, Y, Z) uint8 label map with the global indices of :data:`LABELS`.
        affine: (4, 4) float64 voxel -> RAS+ world (mm) affine, diagonal, positive spacings.
        meta: JSON-serialisable description (phase, noise, spacing, shape, absent organs,
            lesions, cysts, crops, difficulty and reasons, ...).
    """

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Grid helpers
# --------------------------------------------------------------------------------------
class _Grid:
    """Canonical (anatomy-mm) coordinates of the voxel centres, one 1D array per axis."""

    def __init__(self, cx: np.ndarray, cy: np.ndarray, cz: np.ndarray) -> None:
        self.c = (cx.astype(np.float32), cy.astype(np.float32), cz.astype(np.float32))
        self.shape = (cx.size, cy.size, cz.size)

    def box(self, lo, hi):
        """Voxel slices covering canonical box [lo, hi] and broadcastable X, Y, Z arrays.

        Returns None when the box misses the grid.
        """
        sl = []
        for a in range(3):
            c = self.c[a]
            i0 = int(np.searchsorted(c, lo[a], side="left"))
            i1 = int(np.searchsorted(c, hi[a], side="right"))
            if i1 <= i0:
                return None
            sl.append(slice(i0, i1))
        X = self.c[0][sl[0]][:, None, None]
        Y = self.c[1][sl[1]][None, :, None]
        Z = self.c[2][sl[2]][None, None, :]
        return tuple(sl), X, Y, Z


def _rot(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix (3, 3) from angles in degrees about x, y then z."""
    a, b, c = np.deg2rad([rx, ry, rz])
    Rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    Rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


class _Fourier:
    """Smooth random scalar field: sum of sinusoids with random directions and phases."""

    def __init__(self, rng: np.random.Generator, amp: float, wl: tuple[float, float], n: int = 5):
        d = rng.standard_normal((n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        self.k = (d * (2 * np.pi / rng.uniform(*wl, size=(n, 1)))).astype(np.float32)
        self.ph = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        self.a = (amp * rng.uniform(0.5, 1.0, n) / np.sqrt(n / 2)).astype(np.float32)

    def __call__(self, X, Y, Z) -> np.ndarray:
        out = 0
        for k, p, a in zip(self.k, self.ph, self.a):
            out = out + a * np.sin(k[0] * X + k[1] * Y + k[2] * Z + p)
        return out


def _ellipsoid_f(X, Y, Z, c, semi, R, p: float = 2.0):
    """Normalised implicit function of a rotated superellipsoid (<1 inside)."""
    dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
    u = (R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz) / semi[0]
    v = (R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz) / semi[1]
    w = (R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz) / semi[2]
    if p == 2.0:
        return np.sqrt(u * u + v * v + w * w)
    return (np.abs(u) ** p + np.abs(v) ** p + np.abs(w) ** p) ** (1.0 / p)


def _blob(grid: _Grid, parts, deform: _Fourier | None, pad: float = 1.25):
    """Union of superellipsoids ``parts = [(centre, semi, R, p), ...]`` with deformation.

    Returns (slices, X, Y, Z, f) with f < 1 inside, or None if outside the grid.
    """
    lo = np.min([np.asarray(c) - pad * max(s) for c, s, _, _ in parts], axis=0)
    hi = np.max([np.asarray(c) + pad * max(s) for c, s, _, _ in parts], axis=0)
    b = grid.box(lo, hi)
    if b is None:
        return None
    sl, X, Y, Z = b
    f = None
    for c, s, R, p in parts:
        g = _ellipsoid_f(X, Y, Z, c, s, R, p)
        f = g if f is None else np.minimum(f, g)
    f = np.broadcast_to(f, tuple(s.stop - s.start for s in sl)).astype(np.float32)
    if deform is not None:
        f = f + deform(X, Y, Z)
    return sl, X, Y, Z, f


def _tube(grid: _Grid, pts: np.ndarray, radii: np.ndarray, deform: _Fourier | None = None):
    """Tube along polyline ``pts`` (N, 3) with radii (N,); returns (slices, f) f<1 inside."""
    pts = np.asarray(pts, np.float32)
    radii = np.asarray(radii, np.float32)
    rmax = float(radii.max()) * 1.3 + 2
    b = grid.box(pts.min(0) - rmax, pts.max(0) + rmax)
    if b is None:
        return None
    sl, X, Y, Z = b
    best = np.full(tuple(s.stop - s.start for s in sl), np.inf, np.float32)
    for i in range(len(pts) - 1):
        a, c = pts[i], pts[i + 1]
        ab = c - a
        L2 = float(ab @ ab) + 1e-6
        t = ((X - a[0]) * ab[0] + (Y - a[1]) * ab[1] + (Z - a[2]) * ab[2]) / L2
        t = np.clip(t, 0, 1)
        d = np.sqrt((X - a[0] - t * ab[0]) ** 2 + (Y - a[1] - t * ab[1]) ** 2 + (Z - a[2] - t * ab[2]) ** 2)
        best = np.minimum(best, d / (radii[i] + t * (radii[i + 1] - radii[i])))
    if deform is not None:
        best = best + deform(X, Y, Z)
    return sl, best


def _smooth_noise(rng: np.random.Generator, shape, sigma, coarse: int = 1) -> np.ndarray:
    """Zero-mean unit-sd smooth noise (shape); drawn on a grid ``coarse`` times coarser."""
    cs = tuple(shape) if coarse <= 1 else tuple(max(2, int(np.ceil(n / coarse)) + 1) for n in shape)
    g = rng.standard_normal(cs, dtype=np.float32)
    g = ndimage.gaussian_filter(g, sigma, mode="wrap", truncate=2.5)
    if coarse > 1:
        g = ndimage.zoom(g, [n / c for n, c in zip(shape, cs)], order=1, mode="nearest", grid_mode=False)
        g = g[: shape[0], : shape[1], : shape[2]]
    sd = float(g.std()) or 1.0
    return (g - float(g.mean())) / sd


# --------------------------------------------------------------------------------------
# Case sampling
# --------------------------------------------------------------------------------------
HARD_FACTORS = ("high noise", "arterial phase", "non-contrast phase", "lesion-rich",
                "cropped field of view", "organs missing")


def _sample_case(rng: np.random.Generator, hard_fraction: float) -> dict[str, Any]:
    """Draw the case-level parameters (difficulty, phase, noise, absent organs, ...)."""
    hard = bool(rng.random() < hard_fraction)
    reasons: list[str] = []
    if hard:
        n = int(rng.choice([1, 1, 2, 2, 3]))
        w = np.array([0.22, 0.18, 0.1, 0.18, 0.16, 0.16])
        reasons = [str(r) for r in rng.choice(HARD_FACTORS, size=n, replace=False, p=w)]
        if "arterial phase" in reasons and "non-contrast phase" in reasons:
            reasons.remove("non-contrast phase")
    phase = "venous"
    if "arterial phase" in reasons:
        phase = "arterial"
    elif "non-contrast phase" in reasons:
        phase = "non-contrast"
    noise = float(rng.uniform(30, 50)) if "high noise" in reasons else float(
        rng.uniform(5, 12) if not hard else rng.uniform(8, 20))
    absent: list[str] = []
    if "organs missing" in reasons:
        pool = ["spleen", "left kidney", "right kidney", "gallbladder"]
        k = int(rng.choice([1, 1, 2]))
        absent = [str(a) for a in rng.choice(pool, size=k, replace=False)]
        if "left kidney" in absent and "right kidney" in absent:
            absent.remove("right kidney")
    if "lesion-rich" in reasons:
        n_les = int(rng.integers(2, 5))
        n_cyst = int(rng.integers(1, 4))
    elif hard:
        n_les = int(rng.choice([0, 0, 1, 2]))
        n_cyst = int(rng.choice([0, 0, 1, 2]))
    else:
        n_les = int(rng.random() < 0.2)
        n_cyst = int(rng.random() < 0.15)
    crop_top = crop_bottom = False
    if "cropped field of view" in reasons:
        r = rng.random()
        crop_top = r < 0.65
        crop_bottom = r > 0.35
    return {
        "difficulty": "hard" if hard else "easy",
        "reasons": reasons,
        "phase": phase,
        "noise_sd": round(noise, 2),
        "dose": "low-dose (high noise)" if noise >= 30 else ("standard" if noise >= 12 else "high-dose (low noise)"),
        "absent": sorted(absent),
        "n_lesions": n_les,
        "n_cysts": n_cyst,
        "crop_top": bool(crop_top),
        "crop_bottom": bool(crop_bottom),
    }


# --------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------
def generate_phantom(seed: int, hard_fraction: float = DEFAULT_HARD_FRACTION) -> Phantom:
    """Generate one phantom deterministically from ``seed``.

    Args:
        seed: any non-negative integer.
        hard_fraction: probability that the case is "hard" (see :data:`HARD_FACTORS`).

    Returns:
        :class:`Phantom` with image (X, Y, Z) int16 HU, label (X, Y, Z) uint8, a diagonal
        RAS+ affine (4, 4) and meta.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E17]))
    case = _sample_case(rng, hard_fraction)
    pi = PHASES.index(case["phase"])

    # ---- body habitus (canonical mm) ------------------------------------------------
    A_in = rng.uniform(125, 145)          # half-width of the abdominal cavity (L-R)
    B_in = rng.uniform(82, 98)            # half-depth (A-P)
    mw = rng.uniform(8, 14)               # muscle wall thickness
    fat = rng.uniform(8, 45)              # lateral subcutaneous fat
    fat_ant = fat * rng.uniform(0.9, 1.4)
    fat_post = fat * rng.uniform(0.5, 0.8)
    A_out = A_in + mw + fat
    B_out_ant, B_out_post = B_in + mw + fat_ant, B_in + mw + fat_post

    # ---- sampling geometry ------------------------------------------------------------
    sp = round(float(rng.uniform(0.6, 1.0)), 3)
    fov = rng.uniform(240.0, 330.0)                      # in-plane field of view, mm
    nx = int(np.clip(round(fov / sp / 16) * 16, 160, 384))
    fill = rng.uniform(0.82, 0.95)
    s = fill * nx * sp / (2 * A_out)                     # world mm per canonical mm
    ny = int(np.clip(np.ceil((B_out_ant + B_out_post + 25) * s / fill / sp / 8) * 8, 96, 320))
    kz = rng.uniform(1.0, 1.5)                           # mild z-elongation
    s_z = s * kz
    # canonical z landmarks (set below, but the window needs them now)
    zk_L, zk_R = rng.uniform(-5, 15), rng.uniform(-22, -2)   # kidney centres
    klen = rng.uniform(48, 60)                                 # kidney semi-length
    zdomeR = rng.uniform(105, 125)
    zdomeL = zdomeR - rng.uniform(5, 20)
    kid_bottom = min(zk_L, zk_R) - klen
    z_lo = kid_bottom - rng.uniform(10, 45)
    z_hi = zdomeR + rng.uniform(15, 50)
    if case["crop_top"]:
        z_hi = zdomeR - rng.uniform(0.2, 0.5) * 170           # cut the liver dome off
    if case["crop_bottom"]:
        z_lo = max(zk_L, zk_R) - klen + rng.uniform(0.3, 0.6) * 2 * klen
    ext = (z_hi - z_lo) * s_z
    r = rng.random()
    sz = float(rng.uniform(1.0, 1.6) if r < 0.45 else rng.uniform(1.6, 3.0) if r < 0.85 else rng.uniform(3.0, 5.0))
    max_vox = 8.0e6
    nz_max = int(min(256, max_vox // (nx * ny)))
    nz = int(round(ext / sz))
    if nz < 64:
        sz = max(1.0, ext / 64)
    elif nz > nz_max:
        sz = min(5.0, ext / nz_max)
    sz = round(sz, 3)
    nz = int(np.clip(round(ext / sz), 48, nz_max))
    extra = nz * sz / s_z - (z_hi - z_lo)                  # canonical slack to distribute
    if case["crop_top"] and not case["crop_bottom"]:
        z_lo -= extra
    elif case["crop_bottom"] and not case["crop_top"]:
        z_hi += extra
    else:
        z_lo -= extra * rng.uniform(0.3, 0.7)
    shape = (nx, ny, nz)
    jx, jy = rng.uniform(-0.03, 0.03) * nx * sp, rng.uniform(-0.03, 0.03) * ny * sp
    jy -= (B_out_ant - B_out_post) / 2 * s                  # centre the body, not the cavity
    ox, oy = -(nx - 1) / 2 * sp, -(ny - 1) / 2 * sp
    oz = z_lo * s_z
    cx = (ox + np.arange(nx) * sp - jx) / s
    cy = (oy + np.arange(ny) * sp - jy) / s
    cz = z_lo + (np.arange(nz) * sz) / s_z
    grid = _Grid(cx, cy, cz)
    affine = np.diag([sp, sp, sz, 1.0]).astype(np.float64)
    affine[:3, 3] = [ox, oy, oz]

    label = np.zeros(shape, np.uint8)
    tissue = np.full(shape, T["air"], np.uint8)

    # ---- body wall ---------------------------------------------------------------------
    X2, Y2 = grid.c[0][:, None], grid.c[1][None, :]
    theta = np.arctan2(Y2, X2)
    ang = 1.0
    for k in range(2, 6):
        ang = ang + rng.uniform(0, 0.035) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    zf = grid.c[2]
    taper = (1 + 0.04 * np.sin(zf / rng.uniform(80, 140) + rng.uniform(0, 6))).astype(np.float32)

    def _layer(a, b_ant, b_post):
        b = np.where(Y2 > 0, b_ant, b_post)
        p = np.where(Y2 > 0, 2.0, 2.8)
        return ((np.abs(X2) / a) ** p + (np.abs(Y2) / b) ** p) ** (1 / p) / ang

    r_out = _layer(A_out, B_out_ant, B_out_post).astype(np.float32)
    r_mus = _layer(A_in + mw, B_in + mw, B_in + mw).astype(np.float32)
    r_cav = _layer(A_in, B_in, B_in).astype(np.float32)
    body = r_out[:, :, None] < taper
    tissue[body] = T["fat"]
    tissue[r_mus[:, :, None] < taper] = T["muscle"]
    cavity = r_cav[:, :, None] < taper
    tissue[cavity] = T["visceral_fat"]
    # CT table below the patient
    ytab = -B_out_post - rng.uniform(5, 20)
    tab2 = (Y2 < ytab) & (Y2 > ytab - 35) & (np.abs(X2) < A_out * 1.1) & (Y2 > ytab - 35 + 0.0006 * X2 ** 2)
    shell2 = tab2 & ((Y2 > ytab - 3) | (Y2 < ytab - 32 + 0.0006 * X2 ** 2))
    tissue[np.broadcast_to(tab2[:, :, None], shape)] = T["table"]
    tissue[np.broadcast_to(shell2[:, :, None], shape)] = T["table_shell"]

    extra: list[tuple[float, float, float]] = []   # per-phantom tissues (lesions, cysts)

    def add_tissue(hu: float, tex: float, low: float) -> int:
        extra.append((float(hu), float(tex), float(low)))
        return len(_TISSUE_NAMES) + len(extra) - 1

    def paint(sl, mask, tis: str | int, lab: int | None = None, where_lab=None, where_cavity=False):
        if where_lab is not None:
            mask = mask & np.isin(label[sl], where_lab)
        if where_cavity:
            mask = mask & cavity[sl]
        tissue[sl][mask] = T[tis] if isinstance(tis, str) else tis
        if lab is not None:
            label[sl][mask] = lab
        return mask

    # ---- spine geometry ------------------------------------------------------------------
    y_vb = -B_in + rng.uniform(45, 55)       # vertebral body centre (A-P)
    vb_a, vb_b = rng.uniform(20, 26), rng.uniform(15, 19)
    period = rng.uniform(33, 38)
    disc_h = rng.uniform(3.5, 5.0)
    z0 = rng.uniform(0, period)
    zmod = np.mod(zf - z0, period)
    is_disc = (np.abs(zmod - period / 2) < disc_h)[None, None, :]
    post_gap = (np.abs(np.mod(zf - z0 - 8, period) - period / 2) < 2.5)[None, None, :]

    # paraspinal and psoas muscles (background)
    for sx in (-1, 1):
        b = grid.box((sx * 35 - 40, y_vb - 90, -1e4), (sx * 35 + 40, y_vb - 15, 1e4))
        if b:
            sl, X, Y, Z = b
            m = ((X - sx * rng.uniform(30, 40)) / 32) ** 2 + ((Y - (y_vb - 48)) / 26) ** 2 < 1
            mm = np.broadcast_to(m, tuple(q.stop - q.start for q in sl)) & body[sl]
            tissue[sl][mm] = T["muscle"]
        b = grid.box((sx * 45 - 40, y_vb - 40, -1e4), (sx * 45 + 40, y_vb + 40, 40))
        if b:
            sl, X, Y, Z = b
            rad = np.clip((40 - Z) / 150, 0, 1) * rng.uniform(18, 26) + 4
            m = ((X - sx * (vb_a + rad * 0.9)) ** 2 + ((Y - y_vb) * 1.2) ** 2) < rad ** 2
            tissue[sl][m] = T["muscle"]

    # ribs (unlabelled bone in the body wall, upper abdomen only)
    rib_z0 = rng.uniform(0, 28)
    rw = (r_mus - r_cav)[:, :, None]
    rib_mask = (np.abs(((r_cav + r_mus) / 2)[:, :, None] - taper) < np.maximum(rw * 0.35, 0.01))
    yn = np.clip(Y2 / B_in, -1, 1)[:, :, None]
    zr = zf[None, None, :] + 22 * (yn + 1) / 2 - rib_z0   # ribs descend anteriorly
    rib_mask &= (np.abs(np.mod(zr, 28) - 14) < 4.5) & (zf[None, None, :] > -30 + 30 * (yn + 1))
    rib_mask &= (np.abs(X2) > 30)[:, :, None]
    tissue[rib_mask] = T["rib"]

    # ---- diaphragm, lungs, heart ------------------------------------------------------
    def z_dia(X, Y):
        dR = ((X - 55) / 90) ** 2 + ((Y - 5) / 80) ** 2
        dL = ((X + 55) / 90) ** 2 + ((Y - 5) / 80) ** 2
        return np.maximum(zdomeR - 55 * dR, zdomeL - 55 * dL)

    zd2 = z_dia(X2, Y2).astype(np.float32)                                   # (X, Y)
    above = zf[None, None, :] > (zd2[:, :, None] + 4)
    heart2 = ((X2 + 20) / 62) ** 2 + ((Y2 - 35) / 55) ** 2 < 1
    medi2 = heart2 | ((np.abs(X2) < 28) & (Y2 < y_vb + 40))
    lung = cavity & above & ~medi2[:, :, None]
    tissue[lung] = T["lung"]
    label[lung & (X2 > 0)[:, :, None]] = LUNG_R
    label[lung & (X2 <= 0)[:, :, None]] = LUNG_L
    heart = cavity & above & heart2[:, :, None]
    tissue[heart] = T["heart"]
    vess = _smooth_noise(rng, shape, (1.0, 1.0, 1.0 * sp / sz), coarse=1) if lung.any() else None
    if vess is not None:
        tissue[lung & (vess > 2.1)] = T["lung_vessel"]
        del vess
    below = cavity & ~above

    # ---- bowel loops (unlabelled) -------------------------------------------------------
    cell = max(2, int(round(6 / (sp / s))))   # ~6 canonical mm per coarse cell
    n1 = _smooth_noise(rng, shape, (3, 3, 3 * sp / sz / kz), coarse=cell)
    n2 = _smooth_noise(rng, shape, (3, 3, 3 * sp / sz / kz), coarse=cell)
    loops = below & (np.abs(n1) < 0.45) & (np.abs(n2) < 0.45)
    core = (np.abs(n1) < 0.28) & (np.abs(n2) < 0.28)
    tissue[loops] = T["bowel_wall"]
    tissue[loops & core] = T["bowel_content"]
    tissue[loops & core & (n1 + n2 > 0.2)] = T["gas"]
    del n1, n2, core, loops

    absent = set(case["absent"])

    def jit(v, a):
        return np.asarray(v, float) + rng.uniform(-a, a, 3)

    # ---- liver ---------------------------------------------------------------------------
    liv_c = jit((68, 8, 48), 8)
    parts = [
        (liv_c, (rng.uniform(72, 85), rng.uniform(75, 90), rng.uniform(68, 80)), _rot(*rng.uniform(-8, 8, 3)), 2.2),
        (jit((-20, 50, 68), 8), (rng.uniform(50, 75), rng.uniform(30, 42), rng.uniform(32, 45)),
         _rot(0, rng.uniform(-15, 5), rng.uniform(-15, 5)), 2.0),
    ]
    bl = _blob(grid, parts, _Fourier(rng, 0.12, (60, 140)))
    if bl is not None:
        sl, X, Y, Z, f = bl
        m = (f < 1) & (Z < z_dia(X, Y) - 3)
        # inferior wedge: the left lobe / anterior edge thins inferiorly
        m &= (Z > liv_c[2] - 85 + 0.25 * np.maximum(Y - 20, 0) + 0.2 * np.maximum(liv_c[0] - X, 0))
        m = paint(sl, m, "liver", LIVER, where_cavity=True)
        # portal and hepatic vein branches inside the liver
        hil = np.array([28, 12, liv_c[2] - 25])
        hv = np.array([30, y_vb + 45, zdomeR - 20])
        for origin, n_br, r0 in ((hil, 3, 6.5), (hv, 3, 5.0)):
            for _ in range(n_br):
                tgt = origin + rng.uniform([-10, -40, -30], [90, 50, 40])
                mid = (origin + tgt) / 2 + rng.uniform(-10, 10, 3)
                t = _tube(grid, np.stack([origin, mid, tgt]), np.array([r0, r0 * 0.7, 2.0]) * rng.uniform(0.8, 1.2))
                if t is not None:
                    paint(t[0], t[1] < 1, "liver_vessel", LIVER, where_lab=[LIVER])

    # ---- spleen ----------------------------------------------------------------------------
    if "spleen" not in absent:
        sc = jit((-95, -40, 42), 8)
        R = _rot(rng.uniform(-15, 15), rng.uniform(-10, 10), rng.uniform(-55, -35))
        semi = (rng.uniform(20, 27), rng.uniform(50, 62), rng.uniform(42, 55))
        bl = _blob(grid, [(sc, semi, R, 2.0)], _Fourier(rng, 0.1, (50, 120)))
        if bl is not None:
            sl, X, Y, Z, f = bl
            hol = _ellipsoid_f(X, Y, Z, sc + np.array([40, 20, 0]), (35, 35, 45), np.eye(3))
            m = (f < 1) & (hol > 1) & (Z < z_dia(X, Y) - 3)
            paint(sl, m, "spleen", SPLEEN, where_cavity=True)

    # ---- stomach ---------------------------------------------------------------------------
    stc = jit((-48, 38, 45), 8)
    parts = [
        (jit((-62, 5, 76), 6), (rng.uniform(30, 40),) * 3, np.eye(3), 2.0),
        (stc, (rng.uniform(30, 40), rng.uniform(28, 36), rng.uniform(38, 48)), _rot(0, rng.uniform(-25, -5), 0), 2.0),
        (jit((10, 55, 18), 8), (rng.uniform(35, 45), rng.uniform(20, 26), rng.uniform(18, 24)), _rot(0, 0, rng.uniform(-15, 15)), 2.0),
    ]
    bl = _blob(grid, parts, _Fourier(rng, 0.1, (50, 120)))
    if bl is not None:
        sl, X, Y, Z, f = bl
        m = (f < 1) & (Z < z_dia(X, Y) - 3)
        m = paint(sl, m, "stomach_wall", STOMACH, where_cavity=True)
        lumen = m & (f < 1 - 4.0 / 35)
        tissue[sl][lumen] = T["stomach_fluid"]
        y_air = stc[1] + rng.uniform(-10, 40)
        tissue[sl][lumen & np.broadcast_to(Y > y_air, lumen.shape)] = T["gas"]

    # ---- gallbladder ------------------------------------------------------------------------
    if "gallbladder" not in absent:
        gc = jit((48, 52, liv_c[2] - 48), 7)
        R = _rot(rng.uniform(20, 45), rng.uniform(-10, 10), rng.uniform(-20, 20))
        semi = (rng.uniform(14, 20), rng.uniform(14, 20), rng.uniform(32, 45))
        bl = _blob(grid, [(gc, semi, R, 2.0)], _Fourier(rng, 0.06, (40, 80)))
        if bl is not None:
            sl, X, Y, Z, f = bl
            m = paint(sl, f < 1, "gb_wall", GALLBLADDER, where_cavity=True)
            tissue[sl][m & (f < 0.85)] = T["bile"]
            if rng.random() < 0.2:
                stone = _ellipsoid_f(X, Y, Z, gc + R @ np.array([0, -semi[1] * 0.4, -semi[2] * 0.5]),
                                     np.full(3, 5.0 * rng.uniform(0.8, 1.6)), np.eye(3)) < 1
                tissue[sl][m & stone] = T["gallstone"]

    # ---- kidneys ------------------------------------------------------------------------------
    cyst_sites: list[tuple[np.ndarray, int]] = []
    for name, lab, sx, zc in (("left kidney", KIDNEY_L, -1, zk_L), ("right kidney", KIDNEY_R, 1, zk_R)):
        if name in absent:
            continue
        kc = np.array([sx * rng.uniform(68, 82), y_vb + rng.uniform(-8, 6), zc])
        R = _rot(rng.uniform(-20, -5), sx * rng.uniform(8, 18), sx * rng.uniform(20, 40))
        semi = np.array([rng.uniform(22, 28), rng.uniform(24, 30), klen])
        bl = _blob(grid, [(kc, semi, R, 2.0)], _Fourier(rng, 0.06, (40, 90)))
        if bl is None:
            continue
        sl, X, Y, Z, f = bl
        sinus_c = kc + R @ np.array([-sx * semi[0] * 0.75, semi[1] * 0.3, 0])
        sinus = _ellipsoid_f(X, Y, Z, sinus_c, (semi[0] * 0.6, semi[1] * 0.45, semi[2] * 0.5), R) < 1
        # perirenal fat: push the liver / spleen away from the kidney
        peri = (f < 1.18) & np.isin(label[sl], [LIVER, SPLEEN])
        label[sl][peri] = 0
        tissue[sl][peri] = T["visceral_fat"]
        m = (f < 1) & ~sinus
        m = paint(sl, m, "kidney_cortex", lab, where_cavity=False)
        lob = np.sin(Z * 0.25 + rng.uniform(0, 6)) * np.sin(np.arctan2(Y - kc[1], X - kc[0]) * 5)
        med = m & (f + 0.06 * lob < 0.72)
        tissue[sl][med] = T["kidney_medulla"]
        tissue[sl][sinus & (f < 1) & np.isin(label[sl], [0])] = T["renal_sinus"]
        cyst_sites.append((kc, lab, R, semi))

    # ---- pancreas ---------------------------------------------------------------------------
    pts = np.array([
        jit((32, 12, 2), 5), jit((8, 35, 14), 5), jit((-35, 32, 26), 6), jit((-80, 5, 40), 6)])
    rad = np.array([rng.uniform(13, 17), rng.uniform(10, 13), rng.uniform(9, 12), rng.uniform(7, 10)])
    t = _tube(grid, pts, rad, _Fourier(rng, 0.12, (15, 40)))
    if t is not None:
        paint(t[0], t[1] < 1, "pancreas", PANCREAS, where_lab=[0, STOMACH], where_cavity=True)

    # ---- aorta, iliacs, IVC ------------------------------------------------------------------
    z_bif = rng.uniform(-115, -85)
    ra = rng.uniform(9, 13)
    b = grid.box((-60, y_vb - 10, -1e4), (40, y_vb + 70, 1e4))
    if b is not None:
        sl, X, Y, Z = b
        sig = 1 / (1 + np.exp(-(Z - 70) / 20))
        acx = -10 - 12 * sig + 3 * np.sin(Z / 60)
        acy = y_vb + vb_b + ra + 3 - 12 * sig
        d2 = (X - acx) ** 2 + (Y - acy) ** 2
        paint(sl, (d2 < ra ** 2) & (Z > z_bif), "aorta", AORTA)
        sep = np.maximum(z_bif - Z, 0) * 0.45
        ri = ra * 0.7
        il = (((X - acx - sep) ** 2 + (Y - acy) ** 2 < ri ** 2) | ((X - acx + sep) ** 2 + (Y - acy) ** 2 < ri ** 2)) & (Z <= z_bif)
        paint(sl, il, "iliac")
    b = grid.box((-20, y_vb - 10, -1e4), (90, y_vb + 90, 1e4))
    if b is not None:
        sl, X, Y, Z = b
        up = 1 / (1 + np.exp(-(Z - 25) / 15))
        icx = 22 + 8 * up + 3 * np.sin(Z / 50)
        icy = y_vb + vb_b + 10 + 25 * up
        rx, ry = rng.uniform(11, 15), rng.uniform(7, 11)
        m = ((X - icx) / rx) ** 2 + ((Y - icy) / ry) ** 2 < 1
        m &= Z < z_dia(X, Y) + 3
        paint(sl, m, "ivc", IVC)

    # ---- spine (last, labelled) ---------------------------------------------------------------
    b = grid.box((-70, y_vb - 75, -1e4), (70, y_vb + vb_b + 2, 1e4))
    if b is not None:
        sl, X, Y, Z = b
        shp = tuple(q.stop - q.start for q in sl)
        rv = np.sqrt((X / vb_a) ** 2 + ((Y - y_vb) / vb_b) ** 2)
        vb = np.broadcast_to(rv < 1, shp)
        disc = vb & is_disc[..., sl[2]]
        body_bone = vb & ~disc
        yc = y_vb - vb_b - 12                       # canal centre
        canal = np.broadcast_to((X / 9) ** 2 + ((Y - yc) / 8) ** 2 < 1, shp)
        arch = np.broadcast_to(((X / 16) ** 2 + ((Y - yc) / 15) ** 2 < 1), shp) & ~canal
        spin = np.broadcast_to((np.abs(X) < 4.5) & (Y < yc - 8) & (Y > yc - 42), shp)
        trans = np.broadcast_to((np.abs(X) < 52) & (np.abs(Y - (yc + 4)) < 5), shp) & (
            np.abs(np.mod(Z - z0, period) - period * 0.3) < period * 0.18)
        post = (arch | spin | trans) & ~post_gap[..., sl[2]]
        tissue[sl][disc] = T["disc"]
        tissue[sl][canal] = T["csf"]
        label[sl][disc | canal] = 0
        bone = body_bone | post
        label[sl][bone] = VERTEBRAE
        tissue[sl][bone] = T["bone_cortex"]
        inner = body_bone & np.broadcast_to(rv < 1 - 2.0 / vb_b, shp)
        tissue[sl][inner] = T["bone_cancellous"]

    # ---- liver lesions ---------------------------------------------------------------------------
    lesions = []
    liv_idx = np.flatnonzero(label == LIVER)
    for _ in range(case["n_lesions"] if liv_idx.size else 0):
        d_mm = rng.uniform(5, 40)
        rc = min(d_mm / 2 / s, 28.0)
        d_mm = 2 * rc * s
        semi_l = (rc, rc * rng.uniform(0.8, 1.2), rc * rng.uniform(0.8, 1.2))
        R_l = _rot(*rng.uniform(-30, 30, 3))
        deform_l = _Fourier(rng, 0.08, (10, 30))
        best = None
        for cand in rng.integers(liv_idx.size, size=8):   # prefer centres deep in the liver
            p = np.unravel_index(int(liv_idx[cand]), shape)
            c = np.array([grid.c[a][p[a]] for a in range(3)], float)
            bl = _blob(grid, [(c, semi_l, R_l, 2.0)], deform_l, pad=1.4)
            if bl is None:
                continue
            inside = bl[4] < 1
            frac = float((label[bl[0]][inside] == LIVER).mean()) if inside.any() else 0.0
            if best is None or frac > best[0]:
                best = (frac, bl)
            if frac > 0.97:
                break
        if best is None:
            continue
        sl, X, Y, Z, f = best[1]
        hu_l = float(np.clip(TISSUES["liver"][0][pi] - rng.uniform(25, 80), 5, 100))
        m = paint(sl, f < 1, add_tissue(hu_l, 8, 6), LIVER_LESION, where_lab=[LIVER])
        if case["phase"] != "non-contrast" and rng.random() < 0.4:
            rim = add_tissue(TISSUES["liver"][0][pi] + rng.uniform(10, 40), 8, 0)
            tissue[sl][m & (f > 0.8)] = rim
        lesions.append({"diameter_mm": round(float(d_mm), 1), "hu": round(hu_l, 1), "voxels": int(m.sum())})

    # ---- kidney cysts ----------------------------------------------------------------------------
    cysts = []
    for _ in range(case["n_cysts"] if cyst_sites else 0):
        kc, lab, R, semi = cyst_sites[int(rng.integers(len(cyst_sites)))]
        d_mm = rng.uniform(6, 35)
        rc = min(d_mm / 2 / s, 0.45 * float(semi[:2].min()))
        d_mm = 2 * rc * s
        u = rng.standard_normal(3)
        u /= np.linalg.norm(u)
        c = kc + R @ (u * semi * rng.uniform(0.3, 0.85))
        bl = _blob(grid, [(c, (rc,) * 3, np.eye(3), 2.0)], None)
        if bl is None:
            continue
        sl, X, Y, Z, f = bl
        cyst_t = add_tissue(rng.uniform(0, 15), 3, 1)
        ok = np.isin(label[sl], [lab]) | ((label[sl] == 0) & np.isin(tissue[sl], [T["visceral_fat"], T["renal_sinus"]]))
        m = paint(sl, (f < 1) & ok, cyst_t, KIDNEY_CYST)
        if m.any():
            cysts.append({"diameter_mm": round(float(d_mm), 1), "kidney": INDEX_TO_NAME[lab], "voxels": int(m.sum())})

    # ---- intensities -----------------------------------------------------------------------------
    pad = [0.0] * (256 - len(_TISSUE_NAMES) - len(extra))
    hu_tab = np.array([TISSUES[n][0][pi] for n in _TISSUE_NAMES] + [e[0] for e in extra] + pad, np.float32)
    tex_tab = np.array([TISSUES[n][1] for n in _TISSUE_NAMES] + [e[1] for e in extra] + pad, np.float32)
    low_tab = np.array([TISSUES[n][2][pi] for n in _TISSUE_NAMES] + [e[2] for e in extra] + pad, np.float32)
    # per-phantom enhancement variability (cardiac output, timing)
    hu_tab[[T["liver"], T["spleen"], T["kidney_cortex"], T["aorta"], T["ivc"], T["pancreas"]]] += rng.normal(0, 8, 6).astype(np.float32)
    hu = hu_tab[tissue]
    hu += tex_tab[tissue] * _smooth_noise(rng, shape, (0.8, 0.8, 0.8 * sp / sz))
    hu += low_tab[tissue] * _smooth_noise(rng, shape, (2.0, 2.0, 2.0), coarse=max(2, int(round(5 / (sp / s)))))
    # partial volume: in-plane blur and slice-thickness blur
    ndimage.gaussian_filter(hu, (0.6, 0.6, 0.45), output=hu, truncate=2.5)
    # correlated quantum noise
    noise = _smooth_noise(rng, shape, (0.7, 0.7, 0.0))
    hu += noise * np.float32(case["noise_sd"])
    del noise
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    del hu

    # ---- meta ---------------------------------------------------------------------------------------
    present = sorted(int(v) for v in np.unique(label) if v)
    cropped = []
    for v in present:
        if v in (LUNG_L, LUNG_R, AORTA, IVC, VERTEBRAE):
            continue
        if (label[:, :, 0] == v).any() or (label[:, :, -1] == v).any():
            cropped.append(INDEX_TO_NAME[v])
    meta = {
        "seed": int(seed),
        **case,
        "n_lesions": len(lesions),
        "n_cysts": len(cysts),
        "lesions": lesions,
        "cysts": cysts,
        "spacing": [float(sp), float(sp), float(sz)],
        "shape": [int(n) for n in shape],
        "scale": round(float(s), 4),
        "z_scale": round(float(s_z), 4),
        "present_labels": present,
        "cropped_organs": cropped,
        "subcutaneous_fat_mm": round(float(fat * s), 1),
    }
    return Phantom(image=image, label=label, affine=affine, meta=meta)


# --------------------------------------------------------------------------------------
# Writing a MONAI Label datastore
# --------------------------------------------------------------------------------------
def phantom_seed(seed: int, i: int) -> int:
    """The seed of phantom ``i`` of a pool generated with ``seed`` (deterministic)."""
    return int(np.random.SeedSequence([int(seed), int(i)]).generate_state(1, np.uint32)[0])


def _save_nifti(arr: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(arr, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_data_dtype(arr.dtype)
    # nibabel writes gzip with mtime 0 and no file name, so output is byte-deterministic
    nib.save(img, str(path))


def write_phantoms(out: Path, count: int, seed: int, start: int = 0, progress: bool = True,
                   hard_fraction: float = DEFAULT_HARD_FRACTION) -> list[str]:
    """Write ``count`` phantoms as a MONAI Label datastore under ``out``.

    Layout: ``out/<id>.nii.gz`` (int16 HU), ``out/labels/final/<id>.nii.gz`` (uint8),
    ``out/labels.json`` (merged with an existing one) and ``out/phantoms.json``
    (per-id meta, merged with an existing one). ``id = f"phantom_{i:04d}"`` for
    ``i in range(start, start + count)``; phantom i uses :func:`phantom_seed` (seed, i).

    Returns:
        the ids written, in order.
    """
    out = Path(out)
    (out / "labels" / "final").mkdir(parents=True, exist_ok=True)
    vocab = phantom_vocabulary()
    if (out / LABELS_FILE).exists():
        vocab = Vocabulary.merge([vocab, Vocabulary.load(out / LABELS_FILE)])
    vocab.save(out / LABELS_FILE)

    meta_path = out / PHANTOMS_FILE
    all_meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    ids = [f"phantom_{i:04d}" for i in range(start, start + count)]
    it = zip(range(start, start + count), ids)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=count, desc="phantoms", unit="vol")
    for i, pid in it:
        ph = generate_phantom(phantom_seed(seed, i), hard_fraction=hard_fraction)
        _save_nifti(ph.image, ph.affine, out / f"{pid}.nii.gz")
        _save_nifti(ph.label, ph.affine, out / "labels" / "final" / f"{pid}.nii.gz")
        all_meta[pid] = {"index": i, "pool_seed": int(seed), **ph.meta}
        log.debug("wrote %s (%s, %s)", pid, ph.meta["difficulty"], ph.meta["phase"])
    meta_path.write_text(json.dumps(dict(sorted(all_meta.items())), indent=1) + "\n")
    n_hard = sum(all_meta[p]["difficulty"] == "hard" for p in ids)
    log.info("wrote %d phantoms to %s (%d hard)", count, out, n_hard)
    return ids
