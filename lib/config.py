"""Typed, validated configuration, parsed once at the boundary (CLI flags, YAML/JSON
files, MONAI Label ``--conf`` strings) and passed down as frozen dataclasses."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

MODALITY_CHOICES = ("auto", "CT", "MR")
ADAPTER_OUTPUTS = ("logit", "offset")
REFINERS = ("local", "context")
FOCUS_SAMPLING = ("case", "label", "adaptive")
ABSENT_SAMPLING = ("uniform", "found", "balanced")
ABSENT_SMOOTH = ("unit", "size")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and inference settings; stored inside every checkpoint.

    Attributes:
        size: named size from ``lib.model.build.SIZES`` ("tiny", "small", "base").
        channels: encoder widths at strides 1, 2, 4, 8 of the working grid.
        embed_dim: dimension D of voxel and prompt embeddings in the similarity head.
        text_encoder: "default" (the packaged all-MiniLM-L6-v2), or a local Hugging Face
            model folder (e.g. a BiomedBERT), or "random-tiny" (random weights, tests only).
        text_dim: output width of the text encoder (checked when it loads).
        working_spacing: isotropic spacing in mm at which the network sees the volume.
        temperature: similarity temperature (logits = s * cos(v, t) / temperature + b, s learned).
        tau: half-width of the refiner's confidence band: pass 2 edits only voxels with
            |p1 - 0.5| < tau.
        alpha: weight of the entropy term in the uncertainty (1 - alpha weighs the
            disagreement |p2 - p1| between the passes).
        threshold: probability threshold of the final mask.
        min_volume_mm3: a predicted mask smaller than this is reported absent (emptied).
        crop_margin: voxels (working grid) added around pass 1's candidate region for pass 2.
        side_check: a prompt naming one side ("left kidney") loses the pieces of its mask
            that lie on the other side of the body's midline.
        largest_piece: keep only the largest connected piece of the mask of a label that is
            one piece in (nearly) every training case that has it (organs, not lesions).
        min_volume_fraction: a mask smaller than this share of its label's 5th-percentile
            training volume is reported absent (0: off).
        exclusive_share: the exclusivity clean-up (0: off, the default). A piece of the mask
            of an enclosed label (a lesion or cyst, ``lib.data.label_neighbours``) of which at
            least this share lies in the masks of its competitors (the organs that touch its
            host, e.g. the gallbladder for a liver lesion) is dropped.
        modality: "auto" (CT when the image looks like Hounsfield units), "CT" or "MR".
        dropout: dropout on the image encoding's voxel embeddings and context during
            training; kept on at scoring time by MC-dropout (epistemic) scoring. 0: none.
        adapter: what the per-prompt adapter adds. "logit" (default): a coarse logit map
            (stride 8, upsampled) added to the similarity logits, whose cosine then compares
            each prompt with voxel embeddings normalised once per image. "offset": a
            D-channel embedding offset upsampled to stride 2 and added to the voxel
            embeddings before the cosine, so every prompt normalises its own copy (about 14x
            the per-prompt cost of pass 1 on a training patch; checkpoints written before
            the option existed use it).
        refiner: what pass 2's image features hold. "local" (checkpoints written before the
            option existed): a decomposed convolution over the stride-1 stem features only,
            read out per voxel by a linear layer after the prompt's FiLM modulation.
            "context": plus a projection of the shared decoder's stride-2 features (the
            anatomy pass 1 sees), and a hidden layer in the per-voxel read-out.
        refiner_width: channels of pass 2's image features (a multiple of 4).
        fine_logit: pass 1 adds to its upsampled stride-2 similarity logits a fine term at
            the working grid's resolution: a linear read-out of the refiner's stride-1
            image features with weights set by the prompt (``FineLogit``, starting at
            zero), at every voxel, not only in the band. Without it
            (checkpoints written before the option existed) pass 1's boundaries come from
            the stride-2 grid alone, and only the refiner's band sees the working grid.
        guided_modalities: modalities whose refined probabilities go to the input grid by
            the fast guided filter (``lib.inference.guided``: a local linear model of the
            probability in the image, fitted on the working grid and applied to the input
            image, so a boundary follows the input's own intensity edge) instead of plain
            linear interpolation. Default CT, where organs are bounded by density edges;
            not MR, whose atlas-defined brain regions are not (it lowered the MRI sample's
            structures, ``docs/benchmarks.md``). Empty: off.
        guided_radius: window radius of the guided filter, in working-grid voxels.
        guided_eps: its regularisation, in squared normalised intensity units (the CT
            window spans 2 units): a window whose image varies less stays interpolated.
        second_window_hu: (lo, hi) in HU, or None (default, and every checkpoint written
            before the option existed). When set, the image encoder adds a second intensity
            channel it derives itself from the first: the CT-normalised intensity re-windowed
            to [lo, hi] HU and mapped onto [-1, 1], saturating outside (``ImageEncoder``), a
            fixed contrast gain for faint structures (a liver lesion 20 HU below the liver
            spans 0.06 of the CT window's 2 units, 0.2 of a 0-200 HU window's). Must lie
            inside the CT window (``lib.data.preprocess.CT_WINDOW``). An MR image's
            robust-normalised intensity goes through the same fixed map.
        encode_window: (X, Y, Z) working-grid window in which a volume is encoded at
            inference (sliding, half overlap, Gaussian-blended), so the encoder's
            normalisation sees the same context size as the training patches. Set by
            training to its patch size; multiples of 8.
    """

    size: str = "small"
    channels: tuple[int, int, int, int] = (8, 16, 32, 64)
    embed_dim: int = 32
    text_encoder: str = "default"
    text_dim: int = 384
    working_spacing: float = 2.0
    temperature: float = 1.0
    tau: float = 0.35
    alpha: float = 0.25
    threshold: float = 0.5
    min_volume_mm3: float = 40.0
    crop_margin: int = 4
    side_check: bool = True
    largest_piece: bool = True
    min_volume_fraction: float = 0.25
    exclusive_share: float = 0.0
    modality: str = "auto"
    dropout: float = 0.0
    adapter: str = "logit"
    refiner: str = "local"
    refiner_width: int = 8
    fine_logit: bool = False
    guided_modalities: tuple[str, ...] = ("CT",)
    guided_radius: int = 1
    guided_eps: float = 3e-4
    encode_window: tuple[int, int, int] = (80, 80, 64)
    second_window_hu: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.second_window_hu is not None:
            from .data.preprocess import CT_WINDOW  # only with the option: preprocess loads MONAI

            lo, hi = (float(v) for v in self.second_window_hu)
            if not CT_WINDOW[0] <= lo < hi <= CT_WINDOW[1]:
                raise ValueError(f"second_window_hu must be (lo, hi) with lo < hi inside the CT window {CT_WINDOW}, "
                                 f"got {self.second_window_hu!r}")
            object.__setattr__(self, "second_window_hu", (lo, hi))
        if len(self.encode_window) != 3 or min(self.encode_window) < 16 or any(w % 8 for w in self.encode_window):
            raise ValueError(f"encode_window must be 3 multiples of 8 (>= 16), got {self.encode_window!r}")
        object.__setattr__(self, "encode_window", tuple(int(w) for w in self.encode_window))
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f"channels must be 4 positive ints, got {self.channels!r}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        _positive("embed_dim", self.embed_dim)
        _positive("text_dim", self.text_dim)
        _positive("working_spacing", self.working_spacing)
        _positive("temperature", self.temperature)
        if not 0.0 < self.tau <= 0.5:
            raise ValueError(f"tau must be in (0, 0.5], got {self.tau!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if self.min_volume_mm3 < 0:
            raise ValueError(f"min_volume_mm3 must be >= 0, got {self.min_volume_mm3!r}")
        if not 0.0 <= self.min_volume_fraction <= 1.0:
            raise ValueError(f"min_volume_fraction must be in [0, 1], got {self.min_volume_fraction!r}")
        if not 0.0 <= self.exclusive_share <= 1.0:
            raise ValueError(f"exclusive_share must be in [0, 1], got {self.exclusive_share!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.modality not in MODALITY_CHOICES:
            raise ValueError(f"modality must be one of {MODALITY_CHOICES}, got {self.modality!r}")
        if self.adapter not in ADAPTER_OUTPUTS:
            raise ValueError(f"adapter must be one of {ADAPTER_OUTPUTS}, got {self.adapter!r}")
        if self.refiner not in REFINERS:
            raise ValueError(f"refiner must be one of {REFINERS}, got {self.refiner!r}")
        object.__setattr__(self, "guided_modalities", tuple(self.guided_modalities))
        if not set(self.guided_modalities) <= {"CT", "MR"}:
            raise ValueError(f"guided_modalities must name CT and/or MR, got {self.guided_modalities!r}")
        if not isinstance(self.guided_radius, int) or self.guided_radius < 0:
            raise ValueError(f"guided_radius must be an int >= 0, got {self.guided_radius!r}")
        _positive("guided_eps", self.guided_eps)
        if self.refiner_width < 1 or self.refiner_width % 4:
            raise ValueError(f"refiner_width must be a positive multiple of 4 (its group norm has 4 groups), "
                             f"got {self.refiner_width!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Training schedule and data sampling.

    Attributes:
        steps: optimiser steps in total (both stages).
        stage1_fraction: share of steps in stage 1 (positive-only prompts).
        absent_fraction: share of absent-structure prompts in stage 2.
        absent_ramp: share of stage 2 over which the share of absent prompts rises
            linearly from 0 to ``absent_fraction`` (0: all at once, when stage 2 begins).
        align_fraction: share of steps, from the start, before the refiner's loss is on
            (phase order: align + pass 1 first, refiner last).
        prompts_per_image: prompts drawn per training patch.
        distinct_prompts: draw a patch's prompts without replacement, each label at most
            once (``PatchSampler``); off: with replacement, as every bundled model before
            commit b362b4d was trained, and as the app's online trainer still draws.
        patch_size: training patch on the working grid (voxels).
        lr, weight_decay, warmup_steps: AdamW and its schedule (linear warm-up, cosine).
        w_align, w_heatmap, w_pass1, w_pass2: loss weights.
        w_fg: weight of the foreground-only BCE of pass 1 (``losses.foreground_loss``; 0: off).
        fg_above: with ``w_fg``, apply that pull only to prompts whose label's running
            soft-Dice loss (``focus_sampling: adaptive``) is above this value: the labels
            that have collapsed to "never present", and only while they stay so
            (0: every present prompt).
        w_blob: weight of the per-component Dice term of both passes (``losses.blob_loss``,
            after the blob loss of Kofler et al. 2022): a prompt whose structure lies in
            several pieces in the patch (liver lesions, cysts) also scores each piece by
            itself, so a small lesion beside a large one is not nearly free to miss, as it
            is under the patch's one Dice term (0: off).
        absent_dice: absent-structure prompts get the Dice term as well as the BCE (with
            it, any voxel a prompt lights up in a patch without its structure costs almost
            the whole Dice loss).
        absent_smooth: the smoothing ``s`` of an absent prompt's Dice term ``P / (P + s)``
            (``P`` its summed probability; ``losses.absent_volume_loss``): "unit" (1, the
            present prompts' own, as every bundled model was trained) or "size" (the
            label's median voxel count on the working grid over the training cases that
            have it, at most a quarter of a patch): stray voxels of an absent small
            structure then cost about what its present voxels gain, so it is not cheapest
            to drop it everywhere.
        coord_jitter_mm: per-axis range (mm, uniform +-) of a random shift of the
            coordinate channels of each training patch (see ``PatchSampler``).
        affine_prob: probability that a training patch gets the random affine (rotation up
            to 0.12 rad and scaling up to 10 % per axis; ``PatchSampler``). 0: intensity
            augmentation and coordinate jitter only.
        label_contrast_hu: largest per-structure intensity offset (HU, uniform +-) of the
            label-wise contrast augmentation of CT patches (``training/contrast.py``: each
            labelled structure is shifted by its own offset, a structure inside another by
            its host's, as a contrast phase moves each organ's density by its own amount);
            0: off.
        label_contrast_prob: probability that a CT training patch gets it.
        absent_site: in stage 2, the probability that a patch is cropped where a structure
            its case lacks usually lies, with that structure prompted absent first (a
            one-kidney scan's empty renal fossa asked for the missing kidney;
            ``PatchSampler``). Structures present in at least three quarters of their
            modality's training cases only. 0: off.
        focus_sampling: how a patch's centre label is drawn: "case" (a case, then one of
            its labels), "label" (a label among all, then a case that has it: rare labels
            such as lesions are centred more often) or "adaptive" (label first, weighted by
            each label's running soft-Dice loss: hard and collapsed labels more often).
        focus_boost: label name -> factor (> 0) multiplying that label's weight when a
            patch's centre label is drawn ("label" or "adaptive" focus sampling; labels not
            named keep factor 1): ``{liver lesion: 3, kidney cyst: 3}`` centres about twice
            as many patches on lesions as "adaptive" alone, whose square-root weights give
            the two lesion labels about a quarter of the focused patches late in a run. A
            name not in the training vocabulary is an error when training starts.
        absent_sampling: how a patch's absent-structure prompts are drawn: "uniform" (any
            label absent from the patch, equally) or "found" (weighted by how well the
            model already finds the label when it is present, ``LabelDifficulty.
            absent_weight``; needs ``focus_sampling: adaptive``): a small structure that
            is absent from most patches is otherwise prompted absent far more often than
            present, and in stage 2 it collapses to "never present"; or "balanced" (a label
            is prompted absent only while it has been prompted absent fewer times than
            present since stage 2 began: at most as often absent as present, whatever the
            model has learnt).
        soft_targets: train on each structure's share of every working voxel (linear
            interpolation of its indicator from the input grid, ``soft_label_maps``) instead
            of the nearest-neighbour label map, which moves boundaries by up to half a
            working voxel (``docs/method.md``).
        precision: "bf16" (bfloat16 autocast for the forward pass, about 1.4x faster steps
            on a CPU with native bf16; float32 weights and losses; falls back to "fp32" on a
            CPU without it; on a CUDA device, bfloat16 autocast where the GPU supports it)
            or "fp32".
        device: where training runs: "cpu", "cuda" (the first GPU; an error where there
            is none) or "auto" (a CUDA GPU when one is visible, else the CPU). Patches are
            sampled on the CPU either way; checkpoints hold CPU tensors.
        ema_decay: keep an exponential moving average of the weights with this decay per
            step (``torch.optim.swa_utils``; 0.999 averages over about the last 1000
            steps) and serve it: the checkpoint holds the averaged weights, and
            ``<out stem>.raw.pt`` the last raw ones (0: off, the checkpoint holds the raw
            weights).
        max_minutes: wall-clock budget; training stops early (and saves) when reached.
        val_every: steps between validation passes (0: only at the end).
        seed: sampling and initialisation seed.
    """

    steps: int = 2000
    stage1_fraction: float = 0.4
    absent_fraction: float = 0.4
    absent_ramp: float = 0.0
    align_fraction: float = 0.15
    prompts_per_image: int = 6
    distinct_prompts: bool = False
    patch_size: tuple[int, int, int] = (80, 80, 64)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    w_align: float = 0.2
    w_heatmap: float = 0.5
    w_pass1: float = 1.0
    w_pass2: float = 1.0
    w_fg: float = 0.0
    fg_above: float = 0.0
    w_blob: float = 0.0
    absent_dice: bool = True
    absent_smooth: str = "unit"
    coord_jitter_mm: tuple[float, float, float] = (10.0, 10.0, 80.0)
    affine_prob: float = 0.5
    label_contrast_hu: float = 0.0
    label_contrast_prob: float = 0.5
    absent_site: float = 0.0
    focus_sampling: str = "case"
    focus_boost: dict[str, float] = field(default_factory=dict)
    absent_sampling: str = "uniform"
    soft_targets: bool = False
    precision: str = "bf16"
    device: str = "auto"
    ema_decay: float = 0.0
    max_minutes: float = 0.0
    val_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        _positive("steps", self.steps)
        for name in ("stage1_fraction", "absent_fraction", "absent_ramp", "align_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        _positive("prompts_per_image", self.prompts_per_image)
        if len(self.patch_size) != 3 or min(self.patch_size) < 16 or any(p % 8 for p in self.patch_size):
            raise ValueError(f"patch_size must be 3 multiples of 8 (>= 16), got {self.patch_size!r}")
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        _positive("lr", self.lr)
        for name in ("w_fg", "w_blob"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.fg_above < 1.0:
            raise ValueError(f"fg_above must be in [0, 1), got {self.fg_above!r}")
        if self.fg_above > 0 and self.focus_sampling != "adaptive":
            raise ValueError("fg_above needs focus_sampling: adaptive (the running losses it reads)")
        if len(self.coord_jitter_mm) != 3 or min(self.coord_jitter_mm) < 0:
            raise ValueError(f"coord_jitter_mm must be 3 values >= 0, got {self.coord_jitter_mm!r}")
        object.__setattr__(self, "coord_jitter_mm", tuple(float(j) for j in self.coord_jitter_mm))
        if not 0.0 <= self.affine_prob <= 1.0:
            raise ValueError(f"affine_prob must be in [0, 1], got {self.affine_prob!r}")
        if self.label_contrast_hu < 0:
            raise ValueError(f"label_contrast_hu must be >= 0, got {self.label_contrast_hu!r}")
        if not 0.0 <= self.label_contrast_prob <= 1.0:
            raise ValueError(f"label_contrast_prob must be in [0, 1], got {self.label_contrast_prob!r}")
        if not 0.0 <= self.absent_site <= 1.0:
            raise ValueError(f"absent_site must be in [0, 1], got {self.absent_site!r}")
        if self.focus_sampling not in FOCUS_SAMPLING:
            raise ValueError(f"focus_sampling must be one of {FOCUS_SAMPLING}, got {self.focus_sampling!r}")
        if not isinstance(self.focus_boost, Mapping):
            raise ValueError(f"focus_boost must map label names to factors, got {self.focus_boost!r}")
        bad = {k: v for k, v in self.focus_boost.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v)}
        if bad:
            raise ValueError(f"focus_boost factors must be finite numbers > 0, got {bad!r}")
        object.__setattr__(self, "focus_boost", {str(k): float(v) for k, v in self.focus_boost.items()})
        if self.focus_boost and self.focus_sampling == "case":
            raise ValueError("focus_boost needs focus_sampling: label or adaptive (a label drawn first)")
        if self.absent_sampling not in ABSENT_SAMPLING:
            raise ValueError(f"absent_sampling must be one of {ABSENT_SAMPLING}, got {self.absent_sampling!r}")
        if self.absent_smooth not in ABSENT_SMOOTH:
            raise ValueError(f"absent_smooth must be one of {ABSENT_SMOOTH}, got {self.absent_smooth!r}")
        if self.absent_smooth != "unit" and not self.absent_dice:
            raise ValueError("absent_smooth: size needs absent_dice: true (it smooths that term)")
        if self.absent_sampling == "found" and self.focus_sampling != "adaptive":
            raise ValueError("absent_sampling: found needs focus_sampling: adaptive (the running losses it reads)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.max_minutes < 0:
            raise ValueError(f"max_minutes must be >= 0, got {self.max_minutes!r}")


@dataclass(frozen=True)
class Config:
    """Everything a training or inference run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Config":
        data = dict(data or {})
        unknown = set(data) - {"model", "train"}
        if unknown:
            raise ValueError(f"unknown config sections: {sorted(unknown)}")
        return cls(
            model=_build(ModelConfig, data.get("model", {})),
            train=_build(TrainConfig, data.get("train", {})),
        )

    @classmethod
    def load(cls, path: str | Path | None) -> "Config":
        """Read a YAML or JSON file; None gives the defaults."""
        if path is None:
            return cls()
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return cls.from_dict(yaml.safe_load(text))
        return cls.from_dict(json.loads(text))

    def override(self, **train_overrides: Any) -> "Config":
        return replace(self, train=replace(self.train, **train_overrides))


def _build(klass, values: Mapping[str, Any]):
    names = {f.name for f in fields(klass)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {klass.__name__} keys: {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return klass(**values)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
