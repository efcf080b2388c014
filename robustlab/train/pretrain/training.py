"""NPID pre-training of an audio zoo model from a recipe with a ``[pretrain]`` table.

What happens (`pretrain`):

1. The unlabelled pool: the recipe dataset's training split plus any ``extra_data`` (resampled to the recipe
   dataset's rate, cut or zero-padded to its clip length). Labels are not read for training.
2. The front-end's normalisation is fitted on the pool; a linear projection of the encoder's clip embedding to
   ``dim`` dimensions, L2-normalised, is the instance embedding ``f``; the memory bank holds one row per pool
   example (`robustlab.train.pretrain.npid`).
3. Each epoch: NCE (or exact softmax) loss on shuffled batches, Adam/AdamW with the recipe's schedule, bank
   rows updated with momentum. Each pass sees a random view of every clip (`random_view`: circular time
   shift, gain, spectral tilt, added noise; `shift_frequency` on the features; SpecAugment when the
   recipe's ``[augment]`` asks for it), so the encoder must tell instances apart by what survives the
   views rather than by incidental detail.
4. Before the first epoch (the random encoder; with ``bank_init = "features"`` its BatchNorm statistics come
   from the pass that fills the bank) and every ``knn_every`` epochs: the weighted kNN accuracy of the
   test split's embeddings against the labelled training examples (``knn_k``, ``knn_temperature``), logged in
   the history -- the seed's evaluation during pre-training. The database is the eval-mode embeddings of the
   training examples (``knn_database = "features"``, the default: queries and database pass the same
   network) or NPID's memory-bank rows (``"bank"``: training-mode embeddings of earlier steps, which lag
   behind while BatchNorm statistics move).
5. The stored model is the zoo architecture (front-end + encoder + a head for the recipe dataset). The
   projection is dropped (the checkpoint's embeddings are the encoder's clip embedding). With
   ``head_epochs > 0`` the head is fitted on the frozen encoder's features (labels used for the head only)
   and the card's metrics are that classifier's; otherwise the head keeps its random initialisation and the
   card says so.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ... import data as rdata
from ...data.audio import fix_length, resample
from ...metrics.classification import summarize
from ...models.audio import AudioClassifier
from ...models.base import ModelSpec
from .knn import knn_evaluate
from .npid import MemoryBank, estimate_z, nce_loss, softmax_loss

log = logging.getLogger(__name__)


def unlabelled_pool(recipe: Any, train_audio: Tensor, spec: ModelSpec) -> tuple[Tensor, list[dict[str, Any]]]:
    """The pre-training audio: ``train_audio`` (the recipe dataset's training items) followed by the audio
    of every ``[pretrain] extra_data`` entry, resampled and length-fixed to ``spec``.

    Returns:
        ``(audio (N, T), sources)``, one ``{name, split, options, fingerprint, n, sample_rate}`` per source.

    Raises:
        ValueError: an extra dataset without audio.
    """
    rate, length = int(spec.sample_rate), int(spec.shapes["audio"][0])
    parts = [train_audio]
    sources = [{"name": recipe.data.name, "split": "train", "options": dict(recipe.data.options),
                "n": int(train_audio.shape[0]), "sample_rate": rate}]
    for entry in recipe.pretrain.extra_data:
        ds = rdata.get(entry["name"], entry["split"], **entry["options"])
        if "audio" not in ds.spec.modalities:
            raise ValueError(f"[pretrain] extra_data {entry['name']!r} has no audio (modalities "
                             f"{ds.spec.modalities})")
        audio = rdata.materialize(ds)["audio"]
        audio = fix_length(resample(audio, int(ds.spec.sample_rate), rate), length).clamp(-1.0, 1.0)
        parts.append(audio.contiguous())
        sources.append({"name": entry["name"], "split": entry["split"], "options": dict(entry["options"]),
                        "fingerprint": ds.spec.fingerprint, "n": int(audio.shape[0]),
                        "sample_rate": int(ds.spec.sample_rate)})
    return torch.cat(parts), sources


def random_view(
    audio: Tensor,
    gen: torch.Generator,
    *,
    shift: float = 0.0,
    gain_db: float = 0.0,
    tilt_db: float = 0.0,
    noise_snr: tuple[float, ...] = (),
) -> Tensor:
    """A random view of a waveform batch (B, T), each transform drawn per example:

    - a spectral tilt uniform in +-``tilt_db`` dB per octave (zero-phase, in the Fourier domain, 0 dB at half
      the band; below 1/64 of the band the slope stops);
    - added noise of a random colour (power ~ f^-c, c uniform in [0, 2]) at an SNR uniform in
      ``noise_snr = (lo, hi)`` dB relative to the clip;
    - a circular time shift by up to ``shift * T`` samples either way;
    - a gain uniform in +-``gain_db`` dB; the result is clipped to [-1, 1].

    With every transform off it returns ``audio`` itself.
    """
    if shift <= 0 and gain_db <= 0 and tilt_db <= 0 and not noise_snr:
        return audio
    b, t = audio.shape
    out = audio
    n_freq = t // 2 + 1
    octaves = torch.log2(torch.arange(n_freq).clamp(min=1) / (n_freq / 2)).clamp(-6, 1)  # (F,)
    if tilt_db > 0:
        slope = (torch.rand(b, generator=gen) * 2 - 1) * tilt_db
        gain = 10.0 ** (slope[:, None] * octaves[None, :] / 20.0)
        out = torch.fft.irfft(torch.fft.rfft(out, dim=1) * gain.to(out), n=t, dim=1)
    if noise_snr:
        lo, hi = float(noise_snr[0]), float(noise_snr[-1])
        colour = torch.rand(b, generator=gen) * 2.0  # power exponent
        white = torch.fft.rfft(torch.randn(b, t, generator=gen), dim=1)
        shape = (2.0 ** octaves)[None, :] ** (-colour[:, None] / 2.0)
        noise = torch.fft.irfft(white * shape, n=t, dim=1)
        noise = noise / noise.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-12)
        snr = lo + (hi - lo) * torch.rand(b, generator=gen)
        rms = out.pow(2).mean(1, keepdim=True).sqrt()
        out = out + noise.to(out) * (rms * 10.0 ** (-snr[:, None].to(out) / 20.0))
    if shift > 0:
        max_s = int(shift * t)
        s = torch.randint(-max_s, max_s + 1, (b,), generator=gen)
        pos = (torch.arange(t)[None, :] - s[:, None]) % t  # (B, T) source index of each output sample
        out = torch.gather(out, 1, pos.to(out.device))
    if gain_db > 0:
        g = 10.0 ** ((torch.rand(b, generator=gen) * 2 - 1) * gain_db / 20.0)
        out = out * g.to(out)[:, None]
    return out.clamp(-1.0, 1.0)


def shift_frequency(feats: Tensor, max_shift: float, gen: torch.Generator) -> Tensor:
    """Shift each example's feature map (B, ..., F, T') along the frequency axis by up to ``max_shift * F``
    bins either way (uniform per example), filling the vacated bins with zeros (the normalised features'
    mean). On a log-mel map this is close to a pitch shift: absolute pitch stops telling instances apart."""
    if max_shift <= 0:
        return feats
    b, f_bins = feats.shape[0], feats.shape[-2]
    m = int(max_shift * f_bins)
    if m < 1:
        return feats
    s = torch.randint(-m, m + 1, (b,), generator=gen)
    src = torch.arange(f_bins)[None, :] - s[:, None]  # (B, F): source bin of each output bin
    valid = (src >= 0) & (src < f_bins)
    shape = (b,) + (1,) * (feats.dim() - 3) + (f_bins, 1)
    index = src.clamp(0, f_bins - 1).reshape(shape).expand_as(feats).to(feats.device)
    return torch.gather(feats, -2, index) * valid.reshape(shape).to(feats)


class InstanceEmbedder(nn.Module):
    """The model's front-end and encoder, then a linear projection to ``dim`` and L2 normalisation.

    Args:
        model: an `AudioClassifier` (its ``frontend`` and ``encoder`` are shared, not copied).
        dim: embedding size.
    """

    def __init__(self, model: AudioClassifier, dim: int) -> None:
        super().__init__()
        self.model = model
        self.projection = nn.Linear(model.encoder.out_dim, dim)

    def features(self, audio: Tensor) -> Tensor:
        """Front-end features of a waveform batch (B, T)."""
        return self.model.frontend(audio)

    def forward(self, feats: Tensor) -> Tensor:
        _, clip = self.model.encoder(feats)  # (B, D)
        return F.normalize(self.projection(clip), dim=1)  # (B, dim)


@torch.no_grad()
def embed_all(embedder: InstanceEmbedder, audio: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """Normalised instance embeddings (N, dim) of a waveform tensor, in eval mode."""
    was = embedder.training
    embedder.eval()
    out = [embedder(embedder.features(audio[i : i + batch_size].to(device))).cpu()
           for i in range(0, audio.shape[0], batch_size)]
    embedder.train(was)
    return torch.cat(out)


def _fit_head(model: AudioClassifier, tr: dict[str, Tensor], epochs: int, lr: float, batch_size: int,
              gen: torch.Generator, device: torch.device, multilabel: bool) -> list[float]:
    """Train ``model.head`` alone on the frozen encoder's outputs (computed once, eval mode); returns the
    per-epoch losses."""
    model.eval()
    clips, frames = [], []
    with torch.no_grad():
        for i in range(0, tr["audio"].shape[0], batch_size):
            f, c = model.encoder(model.frontend(tr["audio"][i : i + batch_size].to(device)))
            frames.append(f)
            clips.append(c)
    inputs = torch.cat(clips if model.head.consumes == "clip" else frames)
    labels = tr["label"].to(device)
    model.head.train()
    opt = torch.optim.Adam(model.head.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(inputs.shape[0], generator=gen)
        total = 0.0
        for i in range(0, inputs.shape[0], batch_size):
            idx = order[i : i + batch_size].to(device)
            logits = model.head(inputs[idx])
            y = labels[idx]
            loss = (F.binary_cross_entropy_with_logits(logits, y.float()) if multilabel
                    else F.cross_entropy(logits, y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / inputs.shape[0])
    model.eval()
    return losses


def pretrain(
    recipe: Any,
    *,
    epochs: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> Any:
    """NPID pre-training (module docstring) of ``recipe`` (a `Recipe` with ``pretrain`` set).

    Args:
        recipe: the recipe; its ``[train]`` gives epochs, batch size, optimiser, schedule, seed.
        epochs: override of the epoch count.
        device: where to train (default: CUDA when present).
        progress: a tqdm bar per epoch.
        on_epoch: called with each history row.

    Returns:
        A `robustlab.train.trainer.TrainResult` whose ``pretrain`` holds the protocol, the data and the kNN
        curve; ``history`` has one row per epoch (epoch 0 = the random encoder).

    Raises:
        ValueError: a recipe without ``[pretrain]``, a model that is not an audio classifier, an empty pool.
    """
    from ... import models as rmodels
    from ..trainer import (
        TrainResult,
        _lr_lambda,
        _spec_augment,
        load_splits,
        pick_device,
        predict,
    )

    cfg, pre = recipe.train, recipe.pretrain
    if pre is None:
        raise ValueError(f"{recipe.source}: no [pretrain] table")
    n_epochs = epochs or cfg.epochs
    dev = pick_device(device)
    t_start = time.perf_counter()
    splits = load_splits(recipe)
    train_ds = splits["train"]
    spec = ModelSpec.from_dataset(train_ds.spec, recipe.data.modalities)
    if spec.modalities != ("audio",):
        raise ValueError(f"{recipe.source}: NPID pre-training takes audio-only models; the spec reads "
                         f"{spec.modalities} (set [data] modalities = ['audio'])")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = rmodels.create(recipe.arch, spec, **recipe.arch_args)
    if not isinstance(model, AudioClassifier):
        raise ValueError(f"{recipe.source}: NPID needs an audio backbone (front-end + encoder + head); "
                         f"{recipe.arch} is a {type(model).__name__}")
    tensors = {name: rdata.materialize(ds) for name, ds in splits.items()}
    tr = tensors["train"]
    if cfg.max_train_items is not None and len(tr["label"]) > cfg.max_train_items:
        keep = torch.randperm(len(tr["label"]), generator=gen)[: cfg.max_train_items]
        tr = {k: v[keep] for k, v in tr.items()}
    n_lab = len(tr["label"])
    pool, sources = unlabelled_pool(recipe, tr["audio"], spec)
    n_pool = int(pool.shape[0])
    if n_pool < 2:
        raise ValueError(f"{recipe.source}: NPID needs at least 2 unlabelled examples; got {n_pool}")
    fit = getattr(model.frontend, "fit_normalization", None)
    if fit is not None:
        fit(pool[i : i + 256] for i in range(0, n_pool, 256))
    spectral = recipe.augment.specaugment is not None or pre.freq_shift > 0
    if spectral and isinstance(model.frontend, nn.Identity):
        raise ValueError(f"{recipe.source}: SpecAugment and freq_shift need a spectrogram front-end; "
                         f"{recipe.arch} has none")

    embedder = InstanceEmbedder(model, pre.dim).to(dev)
    params = [p for n, p in embedder.named_parameters() if not n.startswith("model.head.")]
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(n_pool / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(recipe, steps_per_epoch))
    bank = MemoryBank(n_pool, pre.dim, seed=cfg.seed, device=dev)
    if pre.bank_init == "features":  # the initial encoder's own embeddings (training-mode statistics)
        with torch.no_grad():
            embedder.train()
            for i in range(0, n_pool, cfg.batch_size):
                idx = torch.arange(i, min(i + cfg.batch_size, n_pool))
                if idx.numel() > 1:
                    bank.update(idx, embedder(embedder.features(pool[idx].to(dev))), momentum=0.0)
    knn_tau = pre.knn_temperature if pre.knn_temperature is not None else pre.temperature
    test = tensors["test"]
    labels_db = tr["label"]

    def knn(database: Tensor) -> float:
        q = embed_all(embedder, test["audio"], cfg.eval_batch_size, dev)
        k = min(pre.knn_k, database.shape[0])
        return knn_evaluate(database, labels_db, q, test["label"], k=k, tau=knn_tau,
                            num_classes=spec.num_classes).accuracy

    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    random_knn = knn(embed_all(embedder, tr["audio"], cfg.eval_batch_size, dev))
    history.append({"epoch": 0, "loss": None, "knn_accuracy": random_knn,
                    "seconds": time.perf_counter() - t0})
    log.info("%s epoch 0 (random encoder): kNN accuracy %.4f", recipe.id, random_knn)
    if on_epoch is not None:
        on_epoch(history[-1])
    z: float | None = None
    epoch_times: list[float] = []
    for epoch in range(1, n_epochs + 1):
        t_epoch = time.perf_counter()
        embedder.train()
        order = torch.randperm(n_pool, generator=gen)
        starts = range(0, n_pool, cfg.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"{recipe.id} NPID epoch {epoch}/{n_epochs}", leave=False)
        total, seen = 0.0, 0
        for start in starts:
            idx = order[start : start + cfg.batch_size]
            if idx.numel() < 2:  # BatchNorm needs two examples in training mode
                continue
            view = random_view(pool[idx], gen, shift=pre.shift, gain_db=pre.gain_db, tilt_db=pre.tilt_db,
                               noise_snr=tuple(pre.noise_snr))
            feats = embedder.features(view.to(dev))
            feats = shift_frequency(feats, pre.freq_shift, gen)
            if recipe.augment.specaugment is not None:
                feats = _spec_augment(feats, recipe.augment.specaugment, gen)
            f = embedder(feats)
            if pre.loss == "softmax":
                loss = softmax_loss(f, bank.vectors, idx, pre.temperature)
            else:
                noise = bank.rows(bank.sample(idx.numel(), pre.negatives, gen))
                if z is None:
                    z = estimate_z(f, noise, pre.temperature, n_pool)
                    log.info("%s: NCE partition estimate Z = %.4g", recipe.id, z)
                loss = nce_loss(f, bank.rows(idx), noise, pre.temperature, z, n_pool)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bank.update(idx, f.detach(), pre.momentum)
            total += float(loss.detach()) * idx.numel()
            seen += idx.numel()
        epoch_times.append(time.perf_counter() - t_epoch)
        row: dict[str, float] = {"epoch": epoch, "loss": total / max(seen, 1),
                                 "lr": opt.param_groups[0]["lr"], "seconds": epoch_times[-1]}
        if epoch % pre.knn_every == 0 or epoch == n_epochs:
            database = (bank.vectors[:n_lab].cpu() if pre.knn_database == "bank"
                        else embed_all(embedder, tr["audio"], cfg.eval_batch_size, dev))
            row["knn_accuracy"] = knn(database)
        history.append(row)
        log.info("%s NPID epoch %d: %s", recipe.id, epoch,
                 {k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
        if on_epoch is not None:
            on_epoch(row)

    final_knn = next(r["knn_accuracy"] for r in reversed(history) if "knn_accuracy" in r)
    head_losses: list[float] = []
    if pre.head_epochs > 0:
        head_losses = _fit_head(model, tr, pre.head_epochs, pre.head_lr, cfg.batch_size, gen, dev,
                                spec.multilabel)
    model.eval()
    metrics: dict[str, dict[str, float]] = {}
    for name in ("val", "test"):
        key = recipe.data.val_split if name == "val" else "test"
        if key in tensors:
            m = (summarize(predict(model, tensors[key], cfg.eval_batch_size, dev), tensors[key]["label"])
                 if pre.head_epochs > 0 else {})
            metrics[name] = m
    metrics.setdefault("test", {})["knn_accuracy"] = final_knn
    model.cpu()
    info = {
        "method": pre.method,
        "dim": pre.dim,
        "negatives": pre.negatives,
        "temperature": pre.temperature,
        "momentum": pre.momentum,
        "bank_init": pre.bank_init,
        "loss": pre.loss,
        "epochs": n_epochs,
        "batch_size": cfg.batch_size,
        "partition_z": z,
        "knn": {"k": pre.knn_k, "temperature": knn_tau,
                "database": ("memory bank rows of the labelled training examples"
                             if pre.knn_database == "bank"
                             else "eval-mode embeddings of the labelled training examples"),
                "queries": "test split", "n_queries": int(len(test["label"])),
                "n_database": n_lab, "embedding": f"{pre.dim}-d projection"},
        "data": sources,
        "n_unlabelled": n_pool,
        "random_encoder_knn_accuracy": random_knn,
        "knn_accuracy": final_knn,
        "history": [{"epoch": r["epoch"], "knn_accuracy": r.get("knn_accuracy"), "loss": r.get("loss")}
                    for r in history],
        "head": (f"fitted on the frozen pre-trained encoder for {pre.head_epochs} epochs (labels used for "
                 "the head only)" if pre.head_epochs > 0 else "untrained (random initialisation): the "
                 "checkpoint is an encoder; fine-tune it ([init]) or read its embeddings"),
        "head_losses": head_losses,
        "projection": "dropped: the checkpoint's embeddings are the encoder's clip embedding",
        "views": {"shift": pre.shift, "gain_db": pre.gain_db, "tilt_db": pre.tilt_db,
                  "freq_shift": pre.freq_shift,
                  "noise_snr": list(pre.noise_snr),
                  "specaugment": asdict(recipe.augment.specaugment) if recipe.augment.specaugment else None},
    }
    return TrainResult(
        model=model,
        metrics=metrics,
        history=history,
        seconds=time.perf_counter() - t_start,
        seconds_per_epoch=sum(epoch_times) / max(len(epoch_times), 1),
        selected_epoch=n_epochs,
        dataset_fingerprints={name: ds.spec.fingerprint for name, ds in splits.items()},
        dataset_spec=train_ds.spec.to_dict(),
        defense={"switches": ["pretrain:npid"] + (["specaugment"] if recipe.augment.specaugment else [])},
        pretrain=info,
    )


__all__ = ["InstanceEmbedder", "embed_all", "pretrain", "random_view", "shift_frequency", "unlabelled_pool"]
