"""`Purified`: a stochastic zoo model whose EOT gradients are non-zero, on which the full-gradient adaptive
attack is at least as strong as BPDA and as the non-adaptive attack, and which passes the stochastic check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diffusion_tiny import LinearMel, tiny_batch, tiny_diffusion  # noqa: E402

from robustlab.attacks import EOT, PGD, Threat  # noqa: E402
from robustlab.attacks import losses as L  # noqa: E402
from robustlab.attacks.base import attack_mode, declared_stochastic, forward_differs  # noqa: E402
from robustlab.diffusion import Purified  # noqa: E402


def defended(sigma: float = 0.5, steps: int = 2, scale: float = 1.0, n: int = 6):
    clf = LinearMel().eval()
    batch = tiny_batch(n)
    shape = tuple(clf.frontend(batch["audio"][:1]).shape[1:])
    diff = tiny_diffusion(shape, seed=0)
    if scale != 1.0:  # a denoiser whose Jacobian is far from the identity BPDA assumes
        with torch.no_grad():
            diff.unet.conv_out.weight.mul_(scale)
            diff.unet.conv_out.bias.mul_(scale)
    return clf, diff, Purified(clf, diff, diff.schedule.t_for_sigma(sigma), steps), batch


def test_purified_is_a_stochastic_zoo_model() -> None:
    clf, diff, pur, batch = defended()
    assert declared_stochastic(pur) is True and pur.spec is clf.spec and pur.frontend is clf.frontend
    with torch.no_grad():
        a, b = pur(batch), pur(batch)
    assert a.shape == (6, 3) and not torch.allclose(a, b)  # two calls differ
    differs, _ = forward_differs(pur, {"audio": batch["audio"]})
    assert differs
    assert set(pur.embed(batch)) == {"audio", "fused"}
    bpda = pur.with_gradient("bpda")
    assert bpda.diffusion is diff and bpda.model is clf and bpda.t_star == pur.t_star
    assert pur.describe()["noise_level"] >= 0.5
    with pytest.raises(ValueError, match="gradient"):
        pur.with_gradient("straight-through")
    with pytest.raises(ValueError, match="t_star"):
        Purified(clf, diff, 10_000, 1)


@pytest.mark.parametrize("gradient", ["full", "bpda"])
def test_eot_gradients_are_nonzero(gradient: str) -> None:
    _, _, pur, batch = defended()
    model = pur.with_gradient(gradient)
    atk = EOT(PGD(model, Threat("linf", 0.002, "audio"), steps=1), None, samples=3)
    with attack_mode(model):
        p = atk.attack.problem(batch)
        d = {m: torch.zeros_like(v, requires_grad=True) for m, v in p.x.items()}
        loss, _, g = p.loss_grad(d, L.LOSS_FUNCTIONS["ce"])
    assert p.stochastic and p.samples == 3
    assert torch.isfinite(g["audio"]).all() and (g["audio"].abs().sum(1) > 0).all()


def test_full_gradient_attack_is_at_least_as_strong_as_bpda_and_non_adaptive() -> None:
    clf, _, pur, batch = defended(sigma=0.05, steps=1, scale=50.0, n=8)
    with torch.no_grad():  # label = the defended model's own majority vote: clean accuracy 1
        votes = sum(torch.nn.functional.one_hot(pur(batch).argmax(1), 3) for _ in range(8))
    batch["label"] = votes.argmax(1)

    def eot_loss(adv) -> torch.Tensor:  # expected CE on 16 draws, the same draws for every attack
        torch.manual_seed(123)
        with torch.no_grad():
            return torch.stack([L.ce(pur(adv), batch["label"], None) for _ in range(16)]).mean(0)

    threat = Threat("linf", 0.003, "audio")
    full = eot_loss(EOT(PGD(pur, threat, steps=8, seed=0), None, samples=2)(batch))
    bpda = eot_loss(EOT(PGD(pur.with_gradient("bpda"), threat, steps=8, seed=0), None, samples=2)(batch))
    plain = eot_loss(PGD(clf, threat, steps=8, seed=0)(batch))  # non-adaptive: ignores the purifier
    assert full.mean() >= bpda.mean() and full.mean() >= plain.mean()
    assert int((full >= bpda).sum()) >= 6 and int((full >= plain).sum()) >= 6


def test_the_stochastic_sanity_check_passes_with_eot() -> None:
    from robustlab.attacks.checks import stochastic_flag

    _, _, pur, batch = defended(n=6)
    kw = {"steps": 2, "seed": 0, "stochastic_eot": 2, "success_draws": 3}
    adv = EOT(PGD(pur, Threat("linf", 0.002, "audio"), **kw), None, samples=2)(batch)
    flag = stochastic_flag(
        pur, batch, Threat("linf", 0.002, "audio"), "pgd", kw, adv, eot_samples=2, reevals=2, tolerance=0.34
    )
    assert flag.name == "stochastic" and flag.ok is True and flag.evidence["differs"]
