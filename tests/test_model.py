"""Network parts: shapes, factory sizes, similarity math, gating, uncertainty, schedules."""

from dataclasses import replace

import pytest
import torch

from lib.config import TrainConfig
from lib.model.build import SIZES, build_network, count_parameters, sized_config
from lib.model.refiner import GatedRefiner, confidence_band, gated_update
from lib.model.similarity import SimilarityHead, cosine_map, shared_cosine_map, similarity_logits
from lib.model.uncertainty import binary_entropy, scalar_uncertainty, uncertainty_map
from lib.training.schedule import absent_fraction_at, loss_weights_at, lr_at, stage_at


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_network(sized_config("tiny", text_dim=12)).eval()


def test_forward_shapes_and_dtypes(tiny):
    x = torch.randn(2, 4, 16, 24, 32)
    out = tiny(x, torch.randn(6, 12))  # 3 prompts per image
    assert out["logit1"].shape == out["logit2"].shape == (6, 16, 24, 32)
    assert out["logits2"].shape == out["cosine2"].shape == (6, 8, 12, 16)
    assert all(v.dtype == torch.float32 for v in out.values())
    with pytest.raises(ValueError, match="divisible by 8"):
        tiny(torch.randn(1, 4, 12, 16, 16), torch.randn(1, 12))


def test_one_encoding_serves_many_prompts(tiny):
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        enc = tiny.encode_image(x)
        t = torch.randn(3, 12)
        together = tiny.segment(enc, t)["logit2"]
        alone = torch.cat([tiny.segment(enc, t[i : i + 1])["logit2"] for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_windowed_encoding_is_the_plain_one_when_the_volume_fits(tiny):
    torch.manual_seed(1)
    x = torch.randn(1, 4, 16, 24, 32)
    with torch.no_grad():
        plain, windowed = tiny.encode_image(x), tiny.encode_volume(x)
    for a, b in zip((plain.g, plain.voxels, plain.context), (windowed.g, windowed.voxels, windowed.context)):
        torch.testing.assert_close(a, b)


def test_windowed_encoding_stitches_every_stride():
    """A volume larger than the window: each part of the encoding has the plain encoding's
    shape, and a window-sized corner matches the corner window's own encoding away from
    the blend (the first window is the only one covering the first voxels)."""
    torch.manual_seed(2)
    net = build_network(sized_config("tiny", text_dim=12, encode_window=(16, 16, 16))).eval()
    x = torch.randn(1, 4, 32, 24, 16)
    with torch.no_grad():
        plain, windowed = net.encode_image(x), net.encode_volume(x)
        corner = net.encode_image(x[..., :16, :16, :16])
    for a, b in zip((plain.g, plain.voxels, plain.context), (windowed.g, windowed.voxels, windowed.context)):
        assert a.shape == b.shape
    torch.testing.assert_close(windowed.g[..., :4, :4, :], corner.g[..., :4, :4, :], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(windowed.g, plain.g)  # normalisation saw windows, not the volume
    with pytest.raises(ValueError, match="divisible by 8"):
        net.encode_volume(torch.randn(1, 4, 20, 16, 16))


def test_fine_term_starts_at_zero_and_adds_a_per_prompt_read_out():
    torch.manual_seed(4)
    x, t = torch.randn(1, 4, 16, 16, 24), torch.randn(3, 12)
    net = build_network(sized_config("tiny", text_dim=12, fine_logit=True)).eval()

    def upsampled(out):
        return torch.nn.functional.interpolate(out["logits2"].unsqueeze(1), size=(16, 16, 24), mode="trilinear",
                                               align_corners=False).squeeze(1)

    with torch.no_grad():
        enc = net.encode_image(x)
        out = net.segment(enc, t)
        torch.testing.assert_close(out["logit1"], upsampled(out))  # fresh: the stride-2 map alone
        net.fine.weights.weight.normal_(0.0, 0.5)
        net.fine.weights.bias.normal_(0.0, 0.5)
        out = net.segment(enc, t)
        unit = torch.nn.functional.normalize(net.head.embed_prompts(t), dim=1)
        u = net.fine.weights(unit)  # (3, width + 1): read-out weights and bias per prompt
        conv = torch.einsum("cxyz,kc->kxyz", enc.g[0], u[:, :-1]) + u[:, -1, None, None, None]
        alone = torch.cat([net.segment(enc, t[i : i + 1])["logit1"] for i in range(3)])
    torch.testing.assert_close(out["logit1"], upsampled(out) + conv, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["logit1"], alone, rtol=1e-4, atol=1e-4)
    assert (out["logit1"] - upsampled(out)).abs().max() > 1e-2  # the term is there
    with pytest.raises(ValueError, match="do not fit"):
        net.fine(enc.g.repeat(2, 1, 1, 1, 1), torch.randn(3, net.cfg.embed_dim))


def test_factory_sizes_grow():
    counts = [count_parameters(build_network(sized_config(s))) for s in ("tiny", "small", "base")]
    assert counts == sorted(counts) and counts[0] < 200_000 < counts[1] < 1_000_000 < counts[2]
    assert set(SIZES) == {"tiny", "small", "base"}
    with pytest.raises(ValueError, match="size"):
        sized_config("huge")


def test_similarity_logits_exact():
    v = torch.zeros(2, 4, 1, 1, 2)
    v[0, :, 0, 0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    v[0, :, 0, 0, 1] = torch.tensor([0.0, 0.0, 0.0, 2.0])
    v[1, :, 0, 0, 1] = torch.tensor([0.0, 0.0, 3.0, 0.0])
    t = torch.tensor([[2.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    out = similarity_logits(v, t, temperature=0.5, bias=-1.0, scale=10.0)
    # 10 * cos / 0.5 - 1
    assert out[0, 0, 0].tolist() == pytest.approx([19.0, -1.0])
    assert out[1, 0, 0].tolist() == pytest.approx([-1.0, 19.0])
    cos = cosine_map(v, t)
    assert cos[0, 0, 0, 0].item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        similarity_logits(v, t[:1], 1.0)


def test_gate_edits_only_inside_band():
    logit1 = torch.tensor([-5.0, -1.0, 0.0, 0.5, 1.5, 4.0])  # p = .007 .27 .5 .62 .82 .98
    delta = torch.full_like(logit1, 10.0)
    band = confidence_band(torch.sigmoid(logit1), tau=0.35)
    assert band.tolist() == [0, 1, 1, 1, 1, 0]
    out = gated_update(logit1, delta, tau=0.35)
    assert out[0] == logit1[0] and out[-1] == logit1[-1]
    assert torch.equal(out[1:5], logit1[1:5] + 10)


@pytest.mark.parametrize("refiner", ["local", "context"])
def test_refiner_never_changes_confident_voxels(refiner):
    torch.manual_seed(0)
    net = build_network(sized_config("tiny", text_dim=12, refiner=refiner)).eval()
    with torch.no_grad():
        for p in net.refiner.parameters():
            p.normal_()
        out = net(torch.randn(1, 4, 16, 16, 16), torch.randn(2, 12))
    p1 = torch.sigmoid(out["logit1"])
    outside = (p1 - 0.5).abs() >= 0.35
    inside = ~outside
    assert outside.any() and inside.any()
    assert torch.equal(out["logit2"][outside], out["logit1"][outside])
    assert not torch.allclose(out["logit2"][inside], out["logit1"][inside])  # it does edit the band


def test_the_context_refiner_sees_the_decoder_features():
    """With ``refiner: context`` pass 2's image features change with the decoder's stride-2
    features even where the stride-1 stem features are the same; the local refiner's do not
    depend on them, and the context one refuses to run without them."""
    torch.manual_seed(3)
    ctx = GatedRefiner(8, 16, tau=0.35, context_channels=6, hidden=True)
    local = GatedRefiner(8, 16, tau=0.35)
    f1 = torch.randn(1, 8, 8, 6, 4)
    d2, other = torch.randn(1, 6, 4, 3, 2), torch.randn(1, 6, 4, 3, 2)
    assert not torch.allclose(ctx.image_features(f1, d2), ctx.image_features(f1, other))
    assert torch.equal(local.image_features(f1, d2), local.image_features(f1, other))
    # each stride-2 voxel's projection lands on its 2 x 2 x 2 block of stride-1 voxels
    moved = d2.clone()
    moved[..., 1, 2, 0] += 5.0
    changed = (ctx.image_features(f1, moved) != ctx.image_features(f1, d2)).any(1)[0]
    assert changed.nonzero().min(0).values.tolist() == [2, 4, 0]
    assert changed.nonzero().max(0).values.tolist() == [3, 5, 1]
    with pytest.raises(ValueError, match="d2"):
        ctx.image_features(f1)


@pytest.mark.parametrize("hidden", [False, True])
def test_refiner_band_only_equals_dense_gate(hidden):
    """The refiner computes its correction only inside the band; values and gradients must
    equal the dense reference (correction at every voxel, then the gate), with and without
    the context refiner's hidden read-out layer."""
    torch.manual_seed(0)
    refiner = GatedRefiner(8, 16, tau=0.35, hidden=hidden)
    refiner.dense_above = 1.0  # always the band-only path (this band holds ~40 % of voxels)
    with torch.no_grad():
        for p in refiner.parameters():
            p.normal_()
    g = torch.randn(2, 8, 6, 5, 4, requires_grad=True)
    logit1 = (3 * torch.randn(6, 6, 5, 4)).requires_grad_()  # K = 3 prompts per image
    prompts = torch.randn(6, 16)
    sparse = refiner(g, logit1, prompts)
    dense = gated_update(logit1, refiner.dense_delta(g, logit1, prompts), tau=0.35)
    band = confidence_band(torch.sigmoid(logit1), 0.35).bool()
    assert 0 < band.sum() < band.numel()
    assert torch.allclose(sparse, dense, atol=1e-5)
    params = [g, logit1, refiner.film.weight, refiner.film.bias, refiner.out_weight, refiner.out_bias]
    if hidden:
        params += [refiner.hidden.weight, refiner.hidden.bias]
    for a, b in zip(torch.autograd.grad(sparse.square().sum(), params),
                    torch.autograd.grad(dense.square().sum(), params)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-3)
    refiner.dense_above = 0.0  # the dense path for wide bands gives the same values
    assert torch.allclose(refiner(g, logit1, prompts), dense, atol=1e-5)
    far = torch.full_like(logit1, 9.0)  # no voxel in the band: pass 2 returns pass 1
    assert torch.equal(refiner(g, far, prompts), far)


def test_uncertainty_exact_values():
    assert binary_entropy(torch.tensor([0.5])).item() == pytest.approx(1.0)
    assert binary_entropy(torch.tensor([0.0, 1.0])).max().item() < 1e-4
    p1 = torch.tensor([[0.5, 0.9, 0.0, 0.0]])
    p2 = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    u = uncertainty_map(p1, p2, alpha=0.25)
    assert u[0, :2].tolist() == pytest.approx([0.25, 0.75 * 0.4 + 0.25])
    # region: voxels 0 and 1 (p > 0.15); mean of the two
    assert scalar_uncertainty(p1, p2, 0.25, 0.35).item() == pytest.approx((0.25 + 0.55) / 2)
    assert scalar_uncertainty(torch.zeros(1, 3), torch.zeros(1, 3), 0.25, 0.35).item() == 0.0


def test_schedules_exact():
    cfg = TrainConfig(steps=100, stage1_fraction=0.4, absent_fraction=0.3, align_fraction=0.2, lr=1e-3, warmup_steps=10)
    assert [stage_at(s, cfg) for s in (0, 39, 40, 99)] == [1, 1, 2, 2]
    assert [absent_fraction_at(s, cfg) for s in (0, 39, 40)] == [0.0, 0.0, 0.3]
    ramped = replace(cfg, absent_ramp=0.5)  # stage 2 is steps 40-99: the ramp takes 30 of them
    assert [absent_fraction_at(s, ramped) for s in (39, 40, 54, 68, 69, 99)] == pytest.approx(
        [0.0, 0.01, 0.15, 0.29, 0.3, 0.3])
    with pytest.raises(ValueError, match="absent_ramp"):
        TrainConfig(absent_ramp=1.5)
    assert loss_weights_at(19, cfg)["pass2"] == 0.0 and loss_weights_at(20, cfg)["pass2"] == cfg.w_pass2
    assert loss_weights_at(0, cfg)["align"] == cfg.w_align
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(0.05e-3)
    assert lr_at(55, cfg) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))


def test_head_logits_from_cosine_match_the_head():
    torch.manual_seed(0)
    head = SimilarityHead(text_dim=8, embed_dim=4, temperature=0.5)
    v, t = torch.randn(3, 4, 2, 3, 2), torch.randn(3, 4)
    assert torch.allclose(head.logits_from_cosine(cosine_map(v, t)), head(v, t), atol=1e-6)


def test_cosine_map_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    v, t = torch.randn(2, 8, 4, 4, 4), torch.randn(2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos = cosine_map(v.bfloat16(), t)
    assert cos.dtype == torch.float32
    assert torch.allclose(cos, cosine_map(v.bfloat16().float(), t), atol=1e-6)


def test_shared_cosine_map_equals_a_copy_per_prompt():
    torch.manual_seed(0)
    v, t = torch.randn(2, 8, 4, 3, 2), torch.randn(6, 8)  # 3 prompts per image
    shared = shared_cosine_map(v, t)
    assert shared.shape == (6, 4, 3, 2) and shared.dtype == torch.float32
    torch.testing.assert_close(shared, cosine_map(v.repeat_interleave(3, dim=0), t))
    with pytest.raises(ValueError, match="do not fit"):
        shared_cosine_map(v, torch.randn(5, 8))


@pytest.mark.parametrize("adapter", ["logit", "offset"])
def test_adapter_outputs_start_at_the_plain_similarity(adapter):
    """Both adapters start at zero: pass 1 is then the scaled cosine of the image's own
    voxel embeddings with each prompt; once trained, the prompt changes the logits."""
    torch.manual_seed(0)
    net = build_network(sized_config("tiny", text_dim=12, adapter=adapter)).eval()
    assert net.adapter.out.out_channels == (1 if adapter == "logit" else net.cfg.embed_dim)
    x, t = torch.randn(1, 4, 16, 16, 16), torch.randn(3, 12)
    with torch.no_grad():
        enc = net.encode_image(x)
        prompts = net.head.embed_prompts(t)
        out = net.pass1(enc, prompts)
        plain = cosine_map(enc.voxels.repeat_interleave(3, dim=0), prompts)
        torch.testing.assert_close(out["cosine2"], plain)
        torch.testing.assert_close(out["logits2"], net.head.logits_from_cosine(plain))
        torch.nn.init.normal_(net.adapter.out.weight)
        moved = net.pass1(enc, prompts)["logits2"]
    assert not torch.allclose(moved, out["logits2"])


def test_checkpoints_from_before_the_adapter_option_load_with_the_offset_adapter(tmp_path):
    from lib.data.vocab import Vocabulary
    from lib.model.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    net = build_network(sized_config("tiny", text_dim=12, adapter="offset"))
    path = tmp_path / "old.pt"
    save_checkpoint(path, net, Vocabulary.from_json({"labels": {"liver": {"index": 1}}}))
    data = torch.load(path, weights_only=False)
    del data["model_config"]["adapter"]
    torch.save(data, path)
    loaded = load_checkpoint(path)[0]
    assert loaded.cfg.adapter == "offset"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))


def test_checkpoints_from_before_the_refiner_option_load_with_the_local_refiner(tmp_path):
    from lib.data.vocab import Vocabulary
    from lib.model.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    vocab = Vocabulary.from_json({"labels": {"liver": {"index": 1}}})
    net = build_network(sized_config("tiny", text_dim=12))
    path = tmp_path / "old.pt"
    save_checkpoint(path, net, vocab)
    data = torch.load(path, weights_only=False)
    del data["model_config"]["refiner"], data["model_config"]["refiner_width"]
    torch.save(data, path)
    loaded = load_checkpoint(path)[0]
    assert (loaded.cfg.refiner, loaded.cfg.refiner_width) == ("local", 8)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    # a context-refiner checkpoint comes back with its own parts and the same outputs
    ctx = build_network(sized_config("tiny", text_dim=12, refiner="context", refiner_width=12)).eval()
    save_checkpoint(tmp_path / "ctx.pt", ctx, vocab)
    back = load_checkpoint(tmp_path / "ctx.pt")[0]
    assert back.cfg.refiner == "context" and back.refiner.context is not None and back.refiner.hidden is not None
    x, t = torch.randn(1, 4, 16, 16, 16), torch.randn(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(back(x, t)["logit2"], ctx(x, t)["logit2"])


def test_the_second_window_channel_rewindows_the_ct_intensity_exactly():
    from lib.data.preprocess import normalize_intensity
    from lib.model.image_encoder import ImageEncoder

    enc = ImageEncoder(SIZES["tiny"]["channels"], second_window_hu=(-30.0, 170.0))
    hu = torch.tensor([-500.0, -30.0, 20.0, 70.0, 120.0, 170.0, 900.0])
    x = torch.zeros(1, 4, hu.numel(), 1, 1)
    x[0, 0, :, 0, 0] = normalize_intensity(hu, "CT")
    expected = torch.tensor([-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0])
    assert torch.allclose(enc.window_channel(x).flatten(), expected, atol=1e-5)
    assert enc.stem.inplane.in_channels == 5
    assert ImageEncoder(SIZES["tiny"]["channels"]).stem.inplane.in_channels == 4


def test_a_network_with_the_second_window_takes_four_channels_and_round_trips(tmp_path):
    from lib.data.vocab import Vocabulary
    from lib.model.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    net = build_network(sized_config("tiny", text_dim=12, second_window_hu=[-30, 170])).eval()
    assert net.cfg.second_window_hu == (-30.0, 170.0)
    x, text = torch.randn(1, 4, 16, 16, 16), torch.randn(2, 12)
    path = tmp_path / "w.pt"
    save_checkpoint(path, net, Vocabulary.from_json({"labels": {"liver": {"index": 1}}}))
    loaded = load_checkpoint(path)[0]
    assert loaded.cfg.second_window_hu == (-30.0, 170.0)
    with torch.no_grad():
        assert torch.equal(loaded(x, text)["logit2"], net(x, text)["logit2"])


@pytest.mark.parametrize("window", [(100, 100), (200, 0), (-400, 100), (0, 500)])
def test_a_second_window_that_is_empty_or_outside_the_ct_window_is_refused(window):
    with pytest.raises(ValueError, match="window"):
        build_network(sized_config("tiny", text_dim=12, second_window_hu=window))


def test_a_config_file_with_a_second_window_outside_the_ct_window_is_refused_when_parsed():
    from lib.config import Config

    assert Config.from_dict({"model": {"second_window_hu": [-30, 170]}}).model.second_window_hu == (-30.0, 170.0)
    with pytest.raises(ValueError, match="second_window_hu"):
        Config.from_dict({"model": {"second_window_hu": [-30, 900]}})
