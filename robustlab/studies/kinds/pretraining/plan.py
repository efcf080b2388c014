"""Planning of ``pretraining``: its options and the typed conditions of a pre-trained model's cells.

The part's models are self-supervised checkpoints (recipes with ``[pretrain]``, e.g. ``vggish.npid_synthav``).
Conditions of one model:

* `Clean` -- clean accuracy of the checkpoint itself (its head fitted on the frozen encoder);
* `PretrainCurve` -- the weighted kNN accuracy per pre-training epoch, as logged by the pre-training run
  (epoch 0 = the random encoder) and stored on the checkpoint's card;
* `EmbeddingEval` -- weighted kNN and a linear probe on the checkpoint's embeddings (train split as the
  labelled database, test items as queries), and the same for a random encoder of the same architecture;
* `FineTune` -- one fine-tuning run of ``finetune_recipe`` (whose ``[init] from`` names the model) from the
  pre-trained weights or from scratch, at one label fraction and training seed: the accuracy per epoch, then
  the ``attack_sweep`` evaluations of the selected model (clean accuracy, robust accuracy per budget, eps*,
  sanity checks), planned by `robustlab.studies.kinds.attack_sweep.plan` and computed by its cells.

The fine-tuning recipe is resolved here and held in full by the condition (its JSON is hashed into the cell
id), so an edited recipe never reuses a stale result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attack_sweep import plan as attack_plan
from ..base import Clean, Condition, ModelInfo

#: the starting points of a fine-tuning run
INITS = ("pretrained", "scratch")
#: the encoders an embedding evaluation reads
ENCODERS = ("pretrained", "random")


@dataclass(frozen=True)
class Options:
    """Options of a ``pretraining`` part.

    Attributes:
        finetune_recipe: zoo recipe id of the fine-tuning run; its ``[init] from`` must name the part's model
            and its ``[data]`` must be the model's (required).
        fractions: label fractions of the fine-tuning runs (share of the training split, class-stratified).
        train_seeds: training seeds (label subset, head initialisation, batch order) of each (init, fraction).
        inits: ``pretrained`` (the model's weights, new head) and / or ``scratch`` (random initialisation).
        epochs: fine-tuning epochs (0: the recipe's).
        recipe_size: ``default`` or ``full`` (the recipe's ``[full]`` overrides: the GPU protocol).
        curve_split: the split whose accuracy is recorded after every fine-tuning epoch.
        pretrain_curve: report the kNN accuracy per pre-training epoch from the card.
        knn: evaluate the embeddings with the weighted kNN (and ``probe``: a linear probe); knn_k,
            knn_temperature: neighbours and vote temperature; knn_key: the embedding (``fused``, ``audio``);
            knn_train_items: training examples in the database (0: all); encoders: which encoders are
            evaluated (``pretrained``, ``random``: the architecture at random initialisation).
        robust_fractions: fractions whose fine-tuned models are attacked (empty: all).
        attack / norms / eps_linf / eps_snr / steps / step_size / restarts / random_start / early_stop /
            attack_options / potency / potency_norms / potency_level / potency_options / checks / check_eps /
            check_items / check_options: the ``attack_sweep`` evaluation of each fine-tuned model (same
            meaning as in `robustlab.studies.kinds.attack_sweep.plan.Options`).
        check_fractions / check_seeds: the sanity checks run on these fractions and training seeds only.
        batch_size: examples per attack / evaluation call.
        n_boot: bootstrap resamples of the 95% intervals.
    """

    finetune_recipe: str = ""
    fractions: tuple[float, ...] = (1.0, 0.25, 0.1)
    train_seeds: tuple[int, ...] = (0, 1, 2)
    inits: tuple[str, ...] = INITS
    epochs: int = 0
    recipe_size: str = "default"
    curve_split: str = "test"
    pretrain_curve: bool = True
    knn: bool = True
    probe: bool = True
    knn_k: int = 5
    knn_temperature: float = 0.4
    knn_key: str = "fused"
    knn_train_items: int = 0
    encoders: tuple[str, ...] = ENCODERS
    robust_fractions: tuple[float, ...] = ()
    attack: str = "pgd"
    norms: tuple[str, ...] = ("linf", "snr")
    eps_linf: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.004, 0.008)
    eps_snr: tuple[float, ...] = (40.0, 30.0, 20.0, 10.0, 0.0)
    steps: int = 20
    step_size: float = 2.5
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    potency: bool = True
    potency_norms: tuple[str, ...] = ("linf",)
    potency_level: str | float = "chance"
    potency_options: dict[str, Any] = field(default_factory=dict)
    checks: bool = True
    check_eps: dict[str, float] = field(default_factory=lambda: {"linf": 0.002, "snr": 20.0})
    check_items: int = 64
    check_options: dict[str, Any] = field(default_factory=dict)
    check_fractions: tuple[float, ...] = (1.0,)
    check_seeds: tuple[int, ...] = (0,)
    batch_size: int = 64
    n_boot: int = 1000


# ----------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class PretrainCurve(Condition):
    """The kNN accuracy per pre-training epoch, read from the checkpoint's card (fixed by its hash)."""

    cell = "pretrain_curve"

    def label(self) -> str:
        return "pre-training kNN curve"


@dataclass(frozen=True)
class EmbeddingEval(Condition):
    """Weighted kNN and a linear probe on one encoder's embeddings."""

    cell = "embedding"
    encoder: str
    key: str
    k: int
    temperature: float
    probe: bool
    train_items: int
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"kNN {self.encoder} encoder"


@dataclass(frozen=True)
class FineTune(Condition):
    """One fine-tuning run and the ``attack_sweep`` evaluations of its selected model.

    Attributes:
        init: ``pretrained`` or ``scratch``.
        fraction: label fraction.
        train_seed: the run's training seed.
        recipe: the resolved recipe (`Recipe.to_dict`) the run trains with.
        curve_split: the split evaluated after every epoch.
        evaluations: JSON forms of ``attack_sweep`` conditions computed on the fine-tuned model.
    """

    cell = "finetune"
    init: str
    fraction: float
    train_seed: int
    recipe: dict[str, Any]
    curve_split: str
    evaluations: tuple[dict[str, Any], ...]

    def label(self) -> str:
        return f"fine-tune {self.init} {self.fraction:g} seed {self.train_seed}"


# ----------------------------------------------------------------------------------------------- planning


def attack_options(options: Options) -> attack_plan.Options:
    """The ``attack_sweep`` options of the fine-tuned models' evaluation."""
    return attack_plan.Options(
        attacks=(options.attack,),
        norms=tuple(options.norms),
        eps_linf=tuple(options.eps_linf),
        eps_snr=tuple(options.eps_snr),
        modality="audio",
        steps=options.steps,
        step_size=options.step_size,
        restarts=options.restarts,
        random_start=options.random_start,
        early_stop=options.early_stop,
        attack_options=dict(options.attack_options),
        batch_size=options.batch_size,
        potency=options.potency,
        potency_attack=options.attack,
        potency_level=options.potency_level,
        potency_norms=tuple(options.potency_norms),
        potency_options=dict(options.potency_options),
        checks=options.checks,
        check_attack=options.attack,
        check_eps=dict(options.check_eps),
        check_items=options.check_items,
        check_norms=tuple(n for n in options.norms if n in options.check_eps),
        check_options=dict(options.check_options),
        n_boot=options.n_boot,
    )


def finetune_recipe(options: Options, init: str, fraction: float, seed: int) -> Any:
    """The recipe of one fine-tuning run: ``finetune_recipe`` with the seed, label fraction and epochs, and
    without ``[init]`` for ``scratch``."""
    from ....train.recipe import load_recipe

    r = load_recipe(options.finetune_recipe, size=options.recipe_size)
    train = dataclasses.replace(r.train, seed=int(seed), label_fraction=float(fraction),
                                epochs=options.epochs or r.train.epochs)
    return dataclasses.replace(r, train=train, init=r.init if init == "pretrained" else None)


def recipe_json(recipe: Any) -> dict[str, Any]:
    """What fixes a run of ``recipe``: `Recipe.to_dict` without the file path it was read from."""
    return {k: v for k, v in recipe.to_dict().items() if k != "source"}


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` against the models, the fine-tuning recipe and the attacks (ValueError naming
    the problem)."""
    from ....train.recipe import RecipeError, load_recipe

    if not options.finetune_recipe:
        raise ValueError("finetune_recipe is required: a zoo recipe whose [init] from names the part's model")
    if options.recipe_size not in ("default", "full"):
        raise ValueError(f"recipe_size must be 'default' or 'full'; got {options.recipe_size!r}")
    try:
        r = load_recipe(options.finetune_recipe, size=options.recipe_size)
    except RecipeError as exc:
        raise ValueError(f"finetune_recipe {options.finetune_recipe!r}: {exc}") from None
    if r.init is None:
        raise ValueError(f"finetune_recipe {options.finetune_recipe!r} has no [init] table naming a "
                         "checkpoint")
    for m in models:
        if r.init.source != m.id:
            raise ValueError(f"finetune_recipe {options.finetune_recipe!r} starts from {r.init.source!r}, "
                             f"not from the part's model {m.id!r}")
        src = load_recipe(m.id)
        if (src.data.name, src.data.options, src.data.modalities) != (r.data.name, r.data.options,
                                                                      r.data.modalities):
            raise ValueError(f"finetune_recipe {options.finetune_recipe!r} trains on {r.data.name} "
                             f"{r.data.options}; model {m.id!r} is evaluated on {src.data.name} "
                             f"{src.data.options}: fine-tune on the model's dataset")
    bad = [i for i in options.inits if i not in INITS]
    if bad or not options.inits:
        raise ValueError(f"inits must be a non-empty subset of {INITS}; got {list(options.inits)}")
    bad = [e for e in options.encoders if e not in ENCODERS]
    if bad:
        raise ValueError(f"encoders must be a subset of {ENCODERS}; got {list(options.encoders)}")
    for f in (*options.fractions, *options.robust_fractions, *options.check_fractions):
        if not 0.0 < f <= 1.0:
            raise ValueError(f"label fraction {f!r} must be in (0, 1]")
    if not options.fractions or not options.train_seeds:
        raise ValueError("fractions and train_seeds must be non-empty")
    for name in ("knn_k", "check_items", "batch_size", "steps", "restarts"):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} = {getattr(options, name)!r} must be >= 1")
    if options.epochs < 0 or options.knn_train_items < 0 or not options.knn_temperature > 0:
        raise ValueError("epochs and knn_train_items must be >= 0 and knn_temperature > 0")
    attack_plan.check(attack_options(options), models)


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one pre-trained model: its kNN curve, embedding evaluations, then fine-tuning runs
    (fraction x init x seed)."""
    out: list[Condition] = [Clean(batch_size=options.batch_size, n_boot=options.n_boot)]
    if options.pretrain_curve:
        out.append(PretrainCurve())
    if options.knn:
        for enc in options.encoders:
            out.append(EmbeddingEval(enc, options.knn_key, options.knn_k, float(options.knn_temperature),
                                     options.probe, options.knn_train_items, options.batch_size,
                                     options.n_boot))
    evals = attack_plan.conditions(attack_options(options), model)
    robust = set(options.robust_fractions or options.fractions)
    for fraction in options.fractions:
        for init in options.inits:
            for seed in options.train_seeds:
                keep = [c for c in evals if isinstance(c, attack_plan.Clean)]
                if fraction in robust:
                    keep = [c for c in evals if not isinstance(c, attack_plan.Checks)
                            or (fraction in options.check_fractions and seed in options.check_seeds)]
                recipe = recipe_json(finetune_recipe(options, init, fraction, seed))
                out.append(FineTune(init, float(fraction), int(seed), recipe, options.curve_split,
                                    tuple(c.to_json() for c in keep)))
    return out


__all__ = [
    "ENCODERS", "INITS", "EmbeddingEval", "FineTune", "Options", "PretrainCurve", "attack_options", "check",
    "conditions", "finetune_recipe", "recipe_json",
]
