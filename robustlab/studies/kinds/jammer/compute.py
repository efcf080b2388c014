"""Cell computations of ``jammer``: one function per condition type, registered in `CELLS`."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from ...cells import CellContext
from ..base import CellComputations
from ..measure import estimate
from .plan import Dry, Jammer

#: condition type -> computation
CELLS = CellComputations("jammer")

#: how the F1 rows name what was played from the loudspeaker
PLAYED = {
    "room_clean": "nothing (speech and background noise only)",
    "jammer": "the optimised jammer",
    "random_music": "random music of the same synthesizer",
    "white_noise": "white noise",
}


def _keyword_model(ctx: CellContext, positive: int) -> Any:
    model = ctx.model()
    spec = model.spec
    if spec.multilabel or "audio" not in spec.modalities or list(spec.modalities) != ["audio"]:
        raise ValueError(
            f"model {ctx.cell.model}: the jammer study needs a single-label audio-only model, got modalities "
            f"{list(spec.modalities)} (multilabel={spec.multilabel})"
        )
    if not 0 <= positive < spec.num_classes:
        raise ValueError(
            f"positive_class {positive} is not a class of {ctx.cell.model} ({spec.num_classes} classes: "
            f"{list(spec.label_names)})"
        )
    return model


def wav_bytes(clip: torch.Tensor, sample_rate: int) -> bytes:
    """A clip (L,) in [-1, 1] as 16-bit PCM WAV bytes (soundfile)."""
    import soundfile as sf

    buf = io.BytesIO()
    data = clip.detach().double().clamp(-1, 1).cpu().numpy()
    sf.write(buf, data, int(sample_rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


@CELLS.computes(Dry)
def dry(c: Dry, ctx: CellContext) -> list[dict[str, Any]]:
    """Keyword F1 (and accuracy) on the clean test utterances: no room, no noise, no jammer."""
    from ....physical.jammer import detection_f1, detections
    from ..measure import concat, predict_correct

    model = _keyword_model(ctx, c.positive_class)
    det, truth, ok = [], [], []
    with torch.no_grad():
        for batch in ctx.batches(c.batch_size):
            det.append(detections(model({"audio": batch["audio"]}), c.positive_class).cpu().numpy())
            truth.append((batch["label"] == c.positive_class).cpu().numpy())
            ok.append(predict_correct(model, batch))
    f1 = detection_f1(np.concatenate(det)[:, None], np.concatenate(truth), seed=ctx.seed, n_boot=c.n_boot)
    keyword = model.spec.label_names[c.positive_class] if model.spec.label_names else str(c.positive_class)
    return [
        {"condition": "dry", "rooms": "none", "metric": "f1", "keyword": keyword, **f1},
        {
            "condition": "dry",
            "rooms": "none",
            "metric": "clean_accuracy",
            **estimate(concat(ok), ctx.seed, c.n_boot),
        },
    ]


@CELLS.computes(Jammer)
def jammer(c: Jammer, ctx: CellContext) -> list[dict[str, Any]]:
    """Optimise a jammer at ``c.level_db`` on training utterances in the optimisation rooms, then play the
    test utterances in the held-out rooms with nothing, the jammer, random music and white noise at the same
    level (identical playback draws for all four) and report F1 with 95% intervals, the measured levels, the
    jammer's notes, its optimisation curve and its audio (``ctx.attach``)."""
    from ....perturbations.rooms import room_split, simulate_rooms
    from ....physical import SynthConfig, Synthesizer
    from ....physical.jammer import (
        ChannelConfig,
        OverTheAir,
        detection_f1,
        evaluate_detection,
        optimise_jammer,
        white_noise_clip,
    )

    model = _keyword_model(ctx, c.positive_class)
    sr = int(ctx.sample_rate or model.spec.sample_rate)
    cfg = SynthConfig(**c.synth, sample_rate=sr)
    fit_specs, eval_specs = room_split(c.fit_rooms, c.eval_rooms, seed=c.room_seed)
    channel_cfg = ChannelConfig(tuple(c.gain_db), tuple(c.noise_snr_db), c.noise_folder)
    fit_channel = OverTheAir(simulate_rooms(fit_specs, sr, c.rir_seconds), sr, channel_cfg)
    eval_channel = OverTheAir(simulate_rooms(eval_specs, sr, c.rir_seconds), sr, channel_cfg)

    dev = ctx.device or "cpu"
    fit_items = {k: v.to(dev) for k, v in ctx.split_items("train", c.fit_items, seed=c.fit_seed).items()}
    test = {k: v.to(dev) for k, v in ctx.items().items()}
    music = [Synthesizer.random(cfg, seed=k) for k in range(c.random_music)]
    random_clips = [m().detach() for m in music]

    bar = _progress(c.steps, f"{ctx.cell.model} jammer {c.level_db:g} dB")
    synth = Synthesizer.random(cfg, seed=0).to(dev)  # starts from random melody 0
    fit = optimise_jammer(
        model,
        synth,
        fit_items,
        fit_channel,
        c.level_db,
        steps=c.steps,
        lr=c.lr,
        batch_size=c.batch_size,
        positive=c.positive_class,
        seed=ctx.seed,
        window=c.keep_window,
        on_step=lambda s, loss: bar.update(1),
    )
    bar.close()

    level, nb = float(c.level_db), c.n_boot
    rows: list[dict[str, Any]] = []
    played = {
        "room_clean": [None],
        "jammer": [fit.clip],
        "random_music": random_clips,
        "white_noise": [white_noise_clip(cfg.length, seed=c.eval_seed)],
    }
    for name, clips in played.items():
        for rooms, channel in (("held-out", eval_channel), ("optimisation", fit_channel)):
            if rooms == "optimisation" and name != "jammer":
                continue  # the generalisation gap is the jammer's; baselines are not optimised
            res = evaluate_detection(
                model,
                test,
                channel,
                clips,
                level,
                positive=c.positive_class,
                seed=c.eval_seed,
                batch_size=c.eval_batch_size,
            )
            f1 = detection_f1(res["detected"], res["truth"], seed=ctx.seed, n_boot=nb)
            ident = {"condition": name, "rooms": rooms, "level_db": level, "clips": len(clips)}
            rows.append({**ident, "metric": "f1", "played": PLAYED[name], **f1})
            if name != "room_clean":
                snr = res["snr_db"].reshape(-1)
                rows.append(
                    {
                        **ident,
                        "metric": "measured_level_db",
                        **estimate(snr, ctx.seed, nb),
                        "min": float(np.nanmin(snr)),
                        "max": float(np.nanmax(snr)),
                    }
                )

    safe_model = ctx.cell.model.replace("/", "_")
    tag = f"{safe_model}_{level:+g}dB_seed{ctx.cell.seed}".replace("+", "p").replace("-", "m")
    jam_path = ctx.attach(f"jammer_{tag}.wav", wav_bytes(fit.clip, sr), "audio/wav")
    music_path = ctx.attach(f"random_music_{tag}.wav", wav_bytes(random_clips[0], sr), "audio/wav")
    tail = fit.losses[-max(1, len(fit.losses) // 10) :]
    rows.append(
        {
            "condition": "jammer",
            "level_db": level,
            "metric": "jammer_loss",
            "value": float(np.mean(tail)),
            "n": len(fit.losses),
            "kept_step": fit.best_step,
            "losses": [float(v) for v in fit.losses],
            "start_loss": float(np.mean(fit.losses[: max(1, len(fit.losses) // 10)])),
            "notes": fit.synth.describe(),
            "start_notes": music[0].describe(),
            "artefact": jam_path,
            "start_artefact": music_path,
            "synth": {**c.synth, "sample_rate": sr},
            "protocol": {
                "method": "EOT jammer (Adam on synthesizer parameters)",
                "steps": c.steps,
                "lr": c.lr,
                "keep_window": c.keep_window,
                "batch_size": c.batch_size,
                "fit_items": int(len(fit_items["label"])),
                "fit_rooms": c.fit_rooms,
                "eval_rooms": c.eval_rooms,
                "room_seed": c.room_seed,
                "gain_db": list(c.gain_db),
                "noise_snr_db": list(c.noise_snr_db),
                "noise": c.noise_folder or "white / pink / brown Gaussian",
                "random_music": c.random_music,
                "rir_seconds": c.rir_seconds,
                "eval_seed": c.eval_seed,
            },
        }
    )
    rows.append(
        {
            "metric": "rooms",
            "level_db": level,
            "value": len(eval_specs),
            "optimisation": [
                {**s.to_json(), "measured_rt60": r} for s, r in zip(fit_specs, fit_channel.rooms.rt60)
            ],
            "held_out": [
                {**s.to_json(), "measured_rt60": r} for s, r in zip(eval_specs, eval_channel.rooms.rt60)
            ],
        }
    )
    return rows


class _Null:
    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


def _progress(total: int, desc: str) -> Any:
    """A tqdm bar on stderr when tqdm is available and stderr is a terminal, else a silent stand-in."""
    import sys

    if not sys.stderr.isatty():
        return _Null()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _Null()
    return tqdm(total=total, desc=desc, leave=False)


__all__ = ["CELLS", "PLAYED", "dry", "jammer", "wav_bytes"]
