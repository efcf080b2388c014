"""Adversarial training: the example generator the trainer's ``[adversarial]`` switch calls every batch.

- **PGD-AT** (Madry et al., ICLR 2018): ``steps`` PGD steps of ``step_size * eps`` (default ``2.5 / steps``)
  from a uniform random start in the budget ball, projected onto ball and data bounds after every step.
- **Fast-AT** (Wong, Rice and Kolter, ICLR 2020, "Fast is better than free"): one FGSM step of
  ``1.25 * eps`` (default) from a uniform random start, projected.

Both run robustlab's own `robustlab.attacks.PGD` on the model being trained (``steps=1`` for fast-AT), in
eval mode with frozen parameters (`robustlab.attacks.attack_mode`), against the model's own threat: the
recipe's norm and budget on ``audio`` (waveform), ``visual`` (pixels), ``both`` (one joint attack) or
``alternate`` (audio on even batches, visual on odd ones). Deviation from the papers: robustlab attacks keep,
per example, the worst case they evaluated (clean input included, ARCHITECTURE §4), so an example whose
attack ends on a lower-loss point than its start trains on the stronger one.

A ``fraction`` of each batch (its first ``ceil(fraction * B)`` examples; batches are shuffled) is replaced by
its adversarial version, the rest stays clean (``fraction = 0.5``: Goodfellow et al.'s half-and-half
objective); the loss is taken over the whole batch.

Example:
    >>> from robustlab.train.recipe import Adversarial
    >>> at = AdversarialTraining(Adversarial(method="pgd", eps=0.002, steps=7))
    >>> inputs = at.perturb(model, inputs, labels, step=0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import PGD, Threat
from ..train.recipe import Adversarial

__all__ = ["AdversarialTraining"]


class AdversarialTraining:
    """Makes the adversarial part of each training batch.

    Args:
        cfg: the recipe's `Adversarial` settings.
        seed: base seed of the attacks' random starts (batch ``step`` uses ``seed + step``).

    Attributes:
        threats: the threat(s) cycled over batches (two for ``alternate``).
        seconds: time spent making adversarial examples so far.
        examples: adversarial examples made so far.
    """

    def __init__(self, cfg: Adversarial, seed: int = 0) -> None:
        self.cfg, self.seed = cfg, int(seed)
        if cfg.modality == "alternate":
            self.threats = [Threat(cfg.norm, cfg.eps_for(m), m) for m in ("audio", "visual")]
        elif cfg.modality == "both":
            self.threats = [Threat(cfg.norm, {m: cfg.eps_for(m) for m in ("audio", "visual")}, "both")]
        else:
            self.threats = [Threat(cfg.norm, cfg.eps_for(cfg.modality), cfg.modality)]
        self.steps = 1 if cfg.method == "fast" else cfg.steps
        self.step_size = cfg.relative_step()
        self.seconds = 0.0
        self.examples = 0

    def threat_for(self, step: int) -> Threat:
        """The threat used on batch ``step``."""
        return self.threats[step % len(self.threats)]

    def attack(self, model: nn.Module, step: int) -> PGD:
        """The attack of batch ``step`` (a fresh random-start seed per batch)."""
        return PGD(
            model, self.threat_for(step), steps=self.steps, step_size=self.step_size, random_start=True,
            seed=self.seed + step, stochastic=False,
        )

    def perturb(
        self, model: nn.Module, inputs: Mapping[str, Tensor], labels: Tensor, step: int
    ) -> dict[str, Tensor]:
        """``inputs`` with the first ``ceil(fraction * B)`` examples replaced by adversarial ones.

        Args:
            model: the model being trained (its mode and ``requires_grad`` flags are restored).
            inputs: the batch's modalities (B, ...), on the model's device.
            labels: (B,) or (B, K) labels.
            step: the global batch counter (threat choice and random-start seed).
        """
        t0 = time.perf_counter()
        b = labels.shape[0]
        k = min(b, max(1, math.ceil(self.cfg.fraction * b)))
        sub = {m: x[:k] for m, x in inputs.items()}
        adv = self.attack(model, step)({**sub, "label": labels[:k]})
        out = dict(inputs)
        for m in self.threat_for(step).modalities:
            if k == b:
                out[m] = adv[m].detach()
            else:
                out[m] = torch.cat([adv[m].detach(), inputs[m][k:]], 0)
        self.seconds += time.perf_counter() - t0
        self.examples += k
        return out

    def settings(self) -> dict[str, Any]:
        """JSON-able settings and cost so far (for the checkpoint card)."""
        return {
            **asdict(self.cfg),
            "threats": [t.label for t in self.threats],
            "steps_used": self.steps,
            "relative_step_size": self.step_size,
            "attack": "pgd" if self.cfg.method == "pgd" else "fgsm+random start (pgd, 1 step)",
            "adversarial_examples": self.examples,
            "attack_seconds": round(self.seconds, 2),
        }

