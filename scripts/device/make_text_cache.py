"""Precompute the frozen text encoder's features for every prompt of some vocabularies.

For a GPU machine that has no copy of the text encoder's weights (the workplace's device
tool): ``scripts/device/train_cached_text.py`` trains with these features instead.

    PYTHONPATH=. python scripts/device/make_text_cache.py OUT.pt STUDIES_DIR [STUDIES_DIR ...]
"""
import sys

import torch

from lib.data.vocab import Vocabulary
from lib.model.text_encoder import TextEncoder


def main(out: str, studies: list[str]) -> None:
    vocab = Vocabulary.merge([Vocabulary.load(p) for p in studies])
    prompts = sorted({p for e in vocab for p in (*e.train_prompts, e.name, *e.eval_synonyms)})
    text = TextEncoder()
    torch.save({"prompts": prompts, "features": text.encode(prompts), "dim": text.dim}, out)
    print(f"{len(prompts)} prompts -> {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
