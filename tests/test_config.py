"""Typed configuration: defaults, validation at the boundary, files."""

import json

import pytest

from lib.app_config import AppSettings
from lib.config import Config, ModelConfig, TrainConfig


def test_defaults_follow_the_papers():
    m = ModelConfig()
    assert (m.tau, m.alpha, m.temperature) == (0.35, 0.25, 1.0)


@pytest.mark.parametrize("kwargs, name", [
    ({"tau": 0.0}, "tau"), ({"tau": 0.6}, "tau"), ({"alpha": 1.5}, "alpha"),
    ({"temperature": 0}, "temperature"), ({"modality": "PET"}, "modality"),
    ({"channels": (8, 16, 32)}, "channels"), ({"working_spacing": -1}, "working_spacing"),
    ({"encode_window": (80, 80, 60)}, "encode_window"), ({"min_volume_fraction": 1.5}, "min_volume_fraction"),
    ({"adapter": "film"}, "adapter"), ({"refiner": "attention"}, "refiner"), ({"refiner_width": 0}, "refiner_width"),
    ({"refiner_width": 6}, "refiner_width"),
])
def test_model_config_rejects_bad_values_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, name", [
    ({"patch_size": (80, 80, 60)}, "patch_size"), ({"steps": 0}, "steps"),
    ({"stage1_fraction": 1.2}, "stage1_fraction"), ({"max_minutes": -1}, "max_minutes"),
    ({"coord_jitter_mm": (1.0, -1.0, 0.0)}, "coord_jitter_mm"), ({"focus_sampling": "organ"}, "focus_sampling"),
    ({"precision": "fp16"}, "precision"), ({"fg_above": 1.0}, "fg_above"),
    ({"fg_above": 0.5, "focus_sampling": "case"}, "adaptive"),
    ({"absent_sampling": "rare"}, "absent_sampling"), ({"absent_sampling": "found"}, "adaptive"),
    ({"affine_prob": 1.5}, "affine_prob"), ({"absent_site": -0.1}, "absent_site"),
    ({"absent_smooth": "median"}, "absent_smooth"), ({"absent_smooth": "size", "absent_dice": False}, "absent_smooth"),
    ({"focus_boost": {"liver lesion": 0.0}, "focus_sampling": "adaptive"}, "focus_boost"),
    ({"focus_boost": {"liver lesion": float("inf")}, "focus_sampling": "adaptive"}, "focus_boost"),
    ({"focus_boost": ["liver lesion"], "focus_sampling": "adaptive"}, "focus_boost"),
    ({"focus_boost": {"liver lesion": "high"}, "focus_sampling": "adaptive"}, "focus_boost"),
    ({"focus_boost": {"liver lesion": 3.0}, "focus_sampling": "case"}, "focus_boost"),
])
def test_train_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**kwargs)


def test_from_dict_and_files(tmp_path):
    data = {"model": {"tau": 0.3, "channels": [4, 8, 16, 24]}, "train": {"steps": 10, "patch_size": [32, 32, 32]}}
    cfg = Config.from_dict(data)
    assert cfg.model.tau == 0.3 and cfg.model.channels == (4, 8, 16, 24) and cfg.train.patch_size == (32, 32, 32)
    (tmp_path / "c.json").write_text(json.dumps(data))
    (tmp_path / "c.yaml").write_text("model:\n  tau: 0.3\n  channels: [4, 8, 16, 24]\ntrain:\n  steps: 10\n  patch_size: [32, 32, 32]\n")
    assert Config.load(tmp_path / "c.json") == cfg == Config.load(tmp_path / "c.yaml")
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        Config.from_dict({"model": {"bogus": 1}})
    with pytest.raises(ValueError, match="sections"):
        Config.from_dict({"extra": {}})
    with pytest.raises(FileNotFoundError):
        Config.load(tmp_path / "missing.yaml")
    (tmp_path / "b.yaml").write_text("train:\n  focus_sampling: adaptive\n  focus_boost:\n    liver lesion: 3\n")
    boosted = Config.load(tmp_path / "b.yaml")
    assert boosted.train.focus_boost == {"liver lesion": 3.0}
    assert Config.from_dict(boosted.to_dict()) == boosted


def test_app_settings_parse_conf_strings():
    s = AppSettings.from_conf({"cache_mb": "64", "retrain_every": "3", "train_minutes": "2.5", "models": "all"})
    assert (s.cache_mb, s.retrain_every, s.train_minutes) == (64, 3, 2.5)
    with pytest.raises(ValueError, match="retrain_every"):
        AppSettings.from_conf({"retrain_every": "often"})
    with pytest.raises(ValueError, match="val_percent"):
        AppSettings.from_conf({"val_percent": "100"})


def _shipped(name: str) -> Config:
    from pathlib import Path

    return Config.load(Path(__file__).resolve().parents[1] / "configs" / name)


def test_shipped_configs_parse_and_the_lesion_pull_differs_from_the_2mm_config_only_by_its_two_keys():
    from dataclasses import replace

    base, pull = _shipped("spacing2.yaml"), _shipped("lesion_pull.yaml")
    assert base.train.focus_sampling == "adaptive" and base.train.w_fg == 0.0
    assert pull == replace(base, train=replace(base.train, w_fg=0.2, fg_above=0.8))


def test_the_fine_and_pull_configs_are_absent_ramp_with_only_their_named_changes():
    """docs/benchmarks.md compares these runs as one change at a time from absent_ramp.yaml."""
    from dataclasses import replace

    base = _shipped("absent_ramp.yaml")
    assert not base.model.fine_logit and base.train.w_fg == 0.0
    fine = replace(base, model=replace(base.model, fine_logit=True))
    pull = replace(base.train, w_fg=0.2, fg_above=0.8)
    assert _shipped("fine_ramp.yaml") == fine
    assert _shipped("pull_ramp.yaml") == replace(base, train=pull)
    assert _shipped("fine_pull.yaml") == replace(fine, train=pull)
    assert _shipped("fine_pull_half.yaml") == replace(fine, train=replace(pull, w_fg=0.1))
    assert _shipped("absent_site.yaml") == replace(base, train=replace(base.train, absent_site=0.2))
    size = replace(base, train=replace(base.train, absent_smooth="size"))
    assert _shipped("absent_size.yaml") == size
    boost = {"liver lesion": 3.0, "kidney cyst": 3.0}
    assert _shipped("lesion_focus.yaml") == replace(size, train=replace(size.train, focus_boost=boost))


def _physical_patch_mm(cfg: Config) -> list[float]:
    return [p * cfg.model.working_spacing for p in cfg.train.patch_size]


def test_the_3mm_config_is_the_2mm_config_on_a_coarser_grid_with_the_same_physical_patch():
    from dataclasses import replace

    base, coarse = _shipped("spacing2.yaml"), _shipped("spacing3.yaml")
    assert coarse == replace(base, model=replace(base.model, working_spacing=3.0),
                             train=replace(base.train, patch_size=(56, 56, 48), steps=24000))
    assert all(abs(a - b) / a <= 0.15 for a, b in zip(_physical_patch_mm(base), _physical_patch_mm(coarse)))


def test_the_2_5mm_config_is_the_2mm_config_on_a_2_5mm_grid_with_about_the_same_physical_patch():
    from dataclasses import replace

    from lib.trainers.textseg import PATCH_MM, physical_patch

    base, finer = _shipped("spacing2.yaml"), _shipped("spacing25.yaml")
    assert finer == replace(base, model=replace(base.model, working_spacing=2.5),
                            train=replace(base.train, patch_size=(64, 64, 48), steps=20000))
    assert all(abs(a - b) / a <= 0.15 for a, b in zip(_physical_patch_mm(base), _physical_patch_mm(finer)))
    # the app's online trainer, which sizes its patch in mm, trains the served model on the same patch
    assert physical_patch(PATCH_MM, finer.model.working_spacing) == finer.train.patch_size


def _default_before_ema() -> Config:
    """The default configuration as it was before the weight average (commit b362b4d)."""
    from dataclasses import replace

    default = _shipped("default.yaml")
    return replace(default, train=replace(default.train, ema_decay=0.0))


def test_the_default_is_the_2_5mm_config_with_8_distinct_prompts_a_patch_and_averaged_weights():
    from dataclasses import replace

    finer, default = _shipped("spacing25.yaml"), _shipped("default.yaml")
    assert not finer.train.distinct_prompts and finer.train.ema_decay == 0.0
    assert default.train.ema_decay == 0.999
    assert _default_before_ema() == replace(finer, train=replace(finer.train, prompts_per_image=8,
                                                                 distinct_prompts=True))


def test_the_12_prompt_config_is_the_default_of_its_time_with_12_prompts_a_patch():
    from dataclasses import replace

    default, more = _default_before_ema(), _shipped("prompts12.yaml")
    assert more == replace(default, train=replace(default.train, prompts_per_image=12))


def test_the_absent25_config_is_the_default_of_its_time_with_fewer_absent_prompts():
    from dataclasses import replace

    default, fewer = _default_before_ema(), _shipped("absent25.yaml")
    assert fewer == replace(default, train=replace(default.train, absent_fraction=0.25))


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_ema_decay_outside_0_1_is_rejected(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=decay)


def test_the_absent_found_config_is_the_default_with_absent_prompts_drawn_by_how_well_a_label_is_found():
    from dataclasses import replace

    default, found = _shipped("default.yaml"), _shipped("absent_found.yaml")
    assert default.train.absent_sampling == "uniform"
    assert found == replace(default, train=replace(default.train, absent_sampling="found"))


def test_the_context_refiner_config_is_the_default_with_the_context_refiner():
    from dataclasses import replace

    default, ctx = _shipped("default.yaml"), _shipped("context_refiner.yaml")
    assert default.model.refiner == "local"
    assert ctx == replace(default, model=replace(default.model, refiner="context"))


def test_every_shipped_config_loads():
    """Each file in configs/ parses and validates (the benchmark notes name them in commands)."""
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        assert isinstance(Config.load(path), Config), path
