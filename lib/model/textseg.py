"""TextSegNet: image encoder + decomposed decoder + similarity head + gated refiner."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.inferers import sliding_window_inference
from torch import nn

from ..config import ModelConfig
from .decoder import PromptAdapter, SharedDecoder
from .image_encoder import ImageEncoder
from .refiner import FineLogit, GatedRefiner
from .similarity import SimilarityHead, cosine_map, shared_cosine_map
from .upsample import upsample_trilinear


@dataclass
class ImageEncoding:
    """What one image costs once, reused for every prompt.

    Attributes:
        g: (B, w, X, Y, Z) stride-1 refiner features (prompt-independent part of pass 2).
        voxels: (B, D, X/2, Y/2, Z/2) prompt-independent voxel embeddings.
        context: (B, c8, X/8, Y/8, Z/8) coarse context for the prompt adapter.
    """

    g: torch.Tensor
    voxels: torch.Tensor
    context: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.g, self.voxels, self.context))


class TextSegNet(nn.Module):
    """Text-guided 3D segmentation network.

    ``encode_image`` runs once per image; ``segment`` runs for any number of prompts.
    ``forward`` does both. Inputs live on the working grid: X, Y, Z divisible by 8.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ImageEncoder(cfg.channels, second_window_hu=cfg.second_window_hu)
        self.decoder = SharedDecoder(cfg.channels, cfg.embed_dim)
        self.adapter = PromptAdapter(cfg.channels[3], cfg.embed_dim, cfg.embed_dim if cfg.adapter == "offset" else 1)
        self.head = SimilarityHead(cfg.text_dim, cfg.embed_dim, cfg.temperature)
        context = cfg.refiner == "context"
        self.refiner = GatedRefiner(cfg.channels[0], cfg.embed_dim, cfg.tau, width=cfg.refiner_width,
                                    context_channels=cfg.channels[1] if context else 0, hidden=context)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.fine = FineLogit(cfg.refiner_width, cfg.embed_dim) if cfg.fine_logit else None

    def encode_image(self, x: torch.Tensor) -> ImageEncoding:
        """(B, 4, X, Y, Z) -> ImageEncoding."""
        if x.ndim != 5 or any(s % 8 for s in x.shape[2:]):
            raise ValueError(f"expected (B, C, X, Y, Z) with X, Y, Z divisible by 8, got {tuple(x.shape)}")
        feats = self.encoder(x)
        voxels, context, decoded = self.decoder(feats)
        voxels, context = self.dropout(voxels), self.dropout(context)
        return ImageEncoding(g=self.refiner.image_features(feats[0], decoded), voxels=voxels, context=context)

    def encode_volume(self, x: torch.Tensor, overlap: float = 0.5) -> ImageEncoding:
        """Encode a whole volume in sliding windows of ``cfg.encode_window`` (MONAI's
        sliding-window inferer, Gaussian blending), stitching each part of the encoding at
        its own stride. The encoder's group normalisation then sees windows of the size it
        was trained on, not the whole volume (whose statistics differ: more air, more
        organs). A volume no larger than the window is encoded in one piece.

        Shapes: (B, 4, X, Y, Z) with X, Y, Z divisible by 8 -> ImageEncoding as
        ``encode_image``.
        """
        if x.ndim != 5 or any(s % 8 for s in x.shape[2:]):
            raise ValueError(f"expected (B, C, X, Y, Z) with X, Y, Z divisible by 8, got {tuple(x.shape)}")
        window = tuple(min(w, s) for w, s in zip(self.cfg.encode_window, x.shape[2:]))
        if window == tuple(x.shape[2:]):
            return self.encode_image(x)

        def parts(patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            enc = self.encode_image(patch)
            return enc.g, enc.voxels, enc.context

        g, voxels, context = sliding_window_inference(x, window, sw_batch_size=1, predictor=parts,
                                                      overlap=overlap, mode="gaussian")
        return ImageEncoding(g=g, voxels=voxels, context=context)

    def dropout_modules(self) -> list[nn.Module]:
        """The dropout layers (empty when ``cfg.dropout`` is 0), for MC-dropout sampling."""
        return [m for m in self.modules() if isinstance(m, nn.Dropout)]

    def pass1(self, enc: ImageEncoding, prompts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Coarse pass at stride 2.

        Args:
            enc: encoding of B images.
            prompts: (B*K, D) prompt embeddings, K consecutive rows per image.

        Returns:
            ``logits2`` (B*K, X/2, Y/2, Z/2) and ``cosine2`` (same shape): the similarity map
            before scaling, for the alignment and heatmap losses. With ``cfg.adapter``
            "logit" the logits are ``s * cos(v, t) / T + b + up(a)``, ``a`` the adapter's
            (B*K, 1, X/8, Y/8, Z/8) map; with "offset" ``s * cos(v + up(o), t) / T + b``.
        """
        size = enc.voxels.shape[2:]
        adapted = upsample_trilinear(self.adapter(enc.context, prompts), size)
        if self.cfg.adapter == "offset":
            k = prompts.shape[0] // enc.voxels.shape[0]
            cosine = cosine_map(enc.voxels.repeat_interleave(k, dim=0) + adapted, prompts)
            return {"logits2": self.head.logits_from_cosine(cosine), "cosine2": cosine}
        cosine = shared_cosine_map(enc.voxels, prompts)
        return {"logits2": self.head.logits_from_cosine(cosine) + adapted[:, 0].float(), "cosine2": cosine}

    def full_logits(self, enc: ImageEncoding, logits2: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """Pass 1 on the working grid: the stride-2 logits upsampled (trilinear), plus, with
        ``cfg.fine_logit``, the fine term read from the stride-1 features ``enc.g``.

        Args:
            enc: encoding of B images.
            logits2: (B*K, X/2, Y/2, Z/2) from ``pass1``.
            prompts: (B*K, D) prompt embeddings, K consecutive rows per image.

        Returns:
            (B*K, X, Y, Z) pass-1 logits.
        """
        logit1 = upsample_trilinear(logits2.unsqueeze(1), enc.g.shape[2:]).squeeze(1)
        return logit1 if self.fine is None else logit1 + self.fine(enc.g, prompts)

    def segment(self, enc: ImageEncoding, text_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both passes for K prompts per image.

        Args:
            enc: encoding of B images.
            text_features: (B*K, H) frozen text features.

        Returns:
            ``logit1`` (B*K, X, Y, Z) pass-1 logits on the working grid (``full_logits``),
            ``logit2`` (B*K, X, Y, Z) refined logits, plus ``logits2``/``cosine2`` at stride 2.
        """
        prompts = self.head.embed_prompts(text_features)
        out = self.pass1(enc, prompts)
        logit1 = self.full_logits(enc, out["logits2"], prompts)
        out["logit1"] = logit1
        out["logit2"] = self.refiner(enc.g, logit1, prompts)
        return out

    def forward(self, x: torch.Tensor, text_features: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.segment(self.encode_image(x), text_features)
