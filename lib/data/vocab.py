"""The label vocabulary of a studies folder (``labels.json``) and prompt resolution.

``labels.json`` maps each label name to either one voxel ``index`` in the label maps or a
list of ``parts`` (indices whose union it is, e.g. "kidneys" = left + right kidney), plus
``synonyms`` (paraphrases used as training prompts), ``eval_synonyms`` (paraphrases held
out from training, used only to measure paraphrase robustness) and a ``modality``
("CT" or "MR")::

    {"version": 1,
     "labels": {"liver": {"index": 1, "modality": "CT",
                          "synonyms": ["the liver", "hepatic parenchyma"],
                          "eval_synonyms": ["liver (whole organ)"]},
                "kidneys": {"parts": [3, 4], "modality": "CT", "synonyms": [...]}}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

LABELS_FILE = "labels.json"
MODALITIES = ("CT", "MR")


def normalize_prompt(text: str) -> str:
    """Lower-case, trim and collapse white space and punctuation around words."""
    text = text.strip().lower()
    text = re.sub(r"[\s_]+", " ", text)
    return text.strip(" .,;:!?")


@dataclass(frozen=True)
class LabelEntry:
    """One named structure.

    Attributes:
        name: canonical name, e.g. "left kidney".
        indices: voxel values in the label maps whose union is this structure.
        modality: "CT" or "MR".
        synonyms: training paraphrases (the canonical name is always a prompt too).
        eval_synonyms: held-out paraphrases, never used for training.
    """

    name: str
    indices: tuple[int, ...]
    modality: str
    synonyms: tuple[str, ...] = ()
    eval_synonyms: tuple[str, ...] = ()
    composite: bool = False

    @property
    def train_prompts(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)

    def mask(self, label_map: np.ndarray) -> np.ndarray:
        """Boolean mask of this structure in an integer label map of any shape."""
        return np.isin(label_map, self.indices)


@dataclass
class Vocabulary:
    """All labels of a studies folder, with lookup by name, synonym or index."""

    entries: dict[str, LabelEntry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_prompt: dict[str, str] = {}
        for entry in self.entries.values():
            for p in (entry.name, *entry.synonyms, *entry.eval_synonyms):
                self._by_prompt.setdefault(normalize_prompt(p), entry.name)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries.values())

    def __getitem__(self, name: str) -> LabelEntry:
        return self.entries[name]

    def names(self, modality: str | None = None, composite: bool | None = None) -> list[str]:
        return [
            e.name
            for e in self.entries.values()
            if (modality is None or e.modality == modality)
            and (composite is None or e.composite == composite)
        ]

    def resolve(self, prompt: str) -> LabelEntry | None:
        """The label a prompt names exactly (name or any synonym), else None."""
        name = self._by_prompt.get(normalize_prompt(prompt))
        return self.entries[name] if name else None

    def index_to_name(self) -> dict[int, str]:
        """Voxel value -> canonical name, for the single-index (non-composite) labels."""
        return {e.indices[0]: e.name for e in self.entries.values() if not e.composite}

    def present(self, label_map: np.ndarray) -> list[str]:
        """Names of the labels with at least one voxel in ``label_map``."""
        values = set(np.unique(label_map).tolist())
        return [e.name for e in self.entries.values() if values.intersection(e.indices)]

    def add(self, entry: LabelEntry) -> None:
        if entry.name in self.entries:
            raise ValueError(f"label {entry.name!r} already exists")
        self.entries[entry.name] = entry
        self.__post_init__()

    # -- (de)serialisation -------------------------------------------------------------
    def to_json(self) -> dict:
        labels = {}
        for e in self.entries.values():
            d: dict = {"parts": list(e.indices)} if e.composite else {"index": e.indices[0]}
            d["modality"] = e.modality
            d["synonyms"] = list(e.synonyms)
            d["eval_synonyms"] = list(e.eval_synonyms)
            labels[e.name] = d
        return {"version": 1, "labels": labels}

    @classmethod
    def from_json(cls, data: Mapping) -> "Vocabulary":
        if not isinstance(data, Mapping) or not isinstance(data.get("labels"), Mapping):
            raise ValueError("labels.json must be an object with a 'labels' object")
        entries: dict[str, LabelEntry] = {}
        for name, d in data["labels"].items():
            if ("index" in d) == ("parts" in d):
                raise ValueError(f"label {name!r}: give exactly one of 'index' or 'parts'")
            composite = "parts" in d
            indices = tuple(int(i) for i in (d["parts"] if composite else [d["index"]]))
            if not indices or min(indices) <= 0:
                raise ValueError(f"label {name!r}: indices must be positive, got {indices}")
            modality = d.get("modality", "CT")
            if modality not in MODALITIES:
                raise ValueError(f"label {name!r}: modality must be one of {MODALITIES}, got {modality!r}")
            entries[name] = LabelEntry(
                name=name,
                indices=indices,
                modality=modality,
                synonyms=tuple(d.get("synonyms", ())),
                eval_synonyms=tuple(d.get("eval_synonyms", ())),
                composite=composite,
            )
        single = [e.indices[0] for e in entries.values() if not e.composite]
        if len(single) != len(set(single)):
            raise ValueError("labels.json: two labels share one index")
        return cls(entries)

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        if path.is_dir():
            path = path / LABELS_FILE
        with open(path) as f:
            return cls.from_json(json.load(f))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / LABELS_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def merge(cls, vocabularies: Iterable["Vocabulary"]) -> "Vocabulary":
        """Union of several vocabularies; the same name must mean the same indices."""
        out: dict[str, LabelEntry] = {}
        for v in vocabularies:
            for e in v:
                if e.name in out and out[e.name].indices != e.indices:
                    raise ValueError(f"label {e.name!r} has different indices in two vocabularies")
                out.setdefault(e.name, e)
        return cls(out)
