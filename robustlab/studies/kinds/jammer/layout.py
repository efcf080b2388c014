"""Report layout of ``jammer`` (registered with `robustlab.reports.layouts.LAYOUTS`): keyword F1 before and
after the jammer vs its level against random music and white noise at the same level (held-out rooms), the
levels measured at the microphone, the jammer's audio, notes and optimisation curve, and the rooms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, fmt_value_ci

#: column order and headings of the F1 table
CONDITIONS = (
    ("room_clean", "no jammer (room)"),
    ("jammer", "jammer"),
    ("random_music", "random music"),
    ("white_noise", "white noise"),
)

#: what the seed paper reports (Li et al., NeurIPS 2019), for the comparison paragraph
PAPER = (
    "The seed paper (Adversarial Music, NeurIPS 2019) reports an emulated wake-word detector's F1 falling "
    "from 93.4 % to 11.0 % with its jammer played over the air (real Alexa: 92.5 % to 11.0 %), while "
    "ordinary music at the same level did not lower it."
)


def _f1_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("metric") == "f1" and r.get("condition") != "dry"]


@LAYOUTS.register("jammer")
class JammerLayout(ReportLayout):
    """Protocol and sections of ``jammer`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r.get("metric") != "jammer_loss":
                continue
            p = r.get("protocol") or {}
            e = out.setdefault(
                repr(sorted((k, repr(v)) for k, v in p.items())),
                {
                    "method": p.get("method"),
                    "levels (dB)": [],
                    "steps": p.get("steps"),
                    "lr": p.get("lr"),
                    "batch": p.get("batch_size"),
                    "fit utterances": p.get("fit_items"),
                    "rooms (fit / held-out)": f"{p.get('fit_rooms')} / {p.get('eval_rooms')}",
                    "gain dB": p.get("gain_db"),
                    "noise SNR dB": p.get("noise_snr_db"),
                    "noise": p.get("noise"),
                    "random music draws": p.get("random_music"),
                    "synth": _synth_text(r.get("synth") or {}),
                    "seeds": set(),
                },
            )
            if r.get("level_db") not in e["levels (dB)"]:
                e["levels (dB)"].append(r.get("level_db"))
            e["seeds"].add(r.get("seed"))
        n = {r.get("n") for r in _f1_rows(rows) if r.get("n") is not None}
        result = []
        for e in out.values():
            e["seeds"] = ", ".join(str(s) for s in sorted(x for x in e["seeds"] if x is not None))
            e["n utterances"] = ", ".join(str(v) for v in sorted(n))
            result.append(e)
        return result

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        sections: list[Section] = []
        f1 = _f1_rows(rows)
        dry = {r["model"]: r for r in rows if r.get("metric") == "f1" and r.get("condition") == "dry"}
        if f1 or dry:
            sections.append(self._f1(f1, dry, figures))
        lv = [r for r in rows if r.get("metric") == "measured_level_db"]
        if lv:
            sections.append(self._levels(lv))
        jam = [r for r in rows if r.get("metric") == "jammer_loss"]
        if jam:
            sections.append(self._jammers(jam, figures))
        rooms = [r for r in rows if r.get("metric") == "rooms"]
        if rooms:
            sections.append(self._rooms(rooms[0]))
        return sections

    def _f1(self, f1: list[Mapping[str, Any]], dry: Mapping[str, Any], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "Keyword F1 [95% bootstrap interval over utterances] on the held-out rooms (never used while "
            "optimising), every utterance played once in every held-out room. 'no jammer (room)' is the same "
            "playback without a jammer (reverberation, background noise, gain); the jammer, random music "
            "from the same synthesizer (unoptimised; the jammer starts from the first melody) and white "
            "noise are played from the same loudspeaker at the same speech-to-jammer level at the "
            "microphone, on the same draws. 'jammer, fit rooms' replays the jammer in the rooms it was "
            "optimised in. 'dry': the test utterances as recorded (no room).",
            PAPER,
        ]
        held = [r for r in f1 if r.get("rooms") == "held-out"]
        table_rows = []
        keys = sorted({(r["model"], r.get("level_db")) for r in held}, key=lambda k: (k[0], -float(k[1])))
        for model, level in keys:
            by = {r["condition"]: r for r in held if r["model"] == model and r.get("level_db") == level}
            fitr = next(
                (
                    r
                    for r in f1
                    if r["model"] == model
                    and r.get("level_db") == level
                    and r.get("rooms") == "optimisation"
                    and r.get("condition") == "jammer"
                ),
                None,
            )
            n = max((r.get("n") or 0) for r in by.values()) if by else None
            table_rows.append(
                [
                    model,
                    level,
                    fmt_value_ci(dry.get(model)),
                    *[fmt_value_ci(by.get(c)) for c, _ in CONDITIONS],
                    fmt_value_ci(fitr),
                    n,
                ]
            )
        blocks.append(
            Table(
                ["model", "level dB", "dry", *[h for _, h in CONDITIONS], "jammer, fit rooms", "n"],
                table_rows,
                "Keyword F1 [95% CI] vs speech-to-jammer level (held-out rooms)",
            )
        )
        recall = []
        for r in held:
            recall.append(
                [
                    r["model"],
                    r.get("level_db"),
                    dict(CONDITIONS).get(r["condition"], r["condition"]),
                    r.get("recall"),
                    r.get("false_alarm_rate"),
                    r.get("precision"),
                    r.get("trials"),
                ]
            )
        blocks.append(
            Table(
                ["model", "level dB", "played", "recall", "false alarms", "precision", "trials"],
                recall,
                "Where the F1 goes: keyword recall and false-alarm rate per trial (held-out rooms)",
            )
        )
        if held:
            df = pd.DataFrame(held)
            df["played"] = df["condition"].map(lambda c: dict(CONDITIONS).get(c, c))
            blocks.append(
                figures.curves(
                    df,
                    x="level_db",
                    hue="played",
                    facet="model",
                    name="jammer_f1_vs_level",
                    title="Keyword F1 vs speech-to-jammer level (held-out rooms)",
                    xlabel="speech-to-jammer ratio at the microphone (dB; lower = louder jammer)",
                    ylabel="keyword F1",
                    invert_x=True,
                )
            )
        verdicts = []
        for model, level in keys:
            by = {r["condition"]: r for r in held if r["model"] == model and r.get("level_db") == level}
            verdicts.append(f"- {model} at {level:g} dB: {_verdict(by)}")
        if verdicts:
            blocks.append("Against the paper's claims:\n\n" + "\n".join(verdicts))
        return Section("Keyword F1 under the over-the-air jammer", blocks, level=3)

    def _levels(self, lv: list[Mapping[str, Any]]) -> Section:
        table_rows = [
            [
                r["model"],
                r.get("level_db"),
                dict(CONDITIONS).get(r.get("condition"), r.get("condition")),
                r.get("rooms"),
                r.get("value"),
                r.get("min"),
                r.get("max"),
                r.get("n"),
            ]
            for r in lv
        ]
        return Section(
            "Jammer level at the microphone",
            [
                "Speech-to-jammer ratio measured on the recordings: the jammer heard is the recording with "
                "it minus the recording without it (gain and clipping to [-1, 1] included), against the "
                "speech after gain. It equals the target unless the mixture clips.",
                Table(
                    ["model", "target dB", "played", "rooms", "measured dB (mean)", "min", "max", "trials"],
                    table_rows,
                ),
            ],
            level=3,
        )

    def _jammers(self, jam: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "The jammers as the loudspeaker plays them (16-bit WAV in the run folder; listen to them) and "
            "the random melody each started from. Loss: class-balanced cross-entropy of the spotter, "
            "maximised (mean of the first and last 10% of the steps; every step is a fresh EOT draw). The "
            "jammer kept is the synthesizer of the step with the highest mean loss over the last 10 steps "
            "(an oscillating optimisation does not end on its best point); Adam's step decays to a tenth "
            "(cosine)."
        ]
        table_rows = []
        curves = []
        for r in jam:
            table_rows.append(
                [
                    r["model"],
                    r.get("level_db"),
                    r.get("start_loss"),
                    r.get("value"),
                    r.get("n"),
                    r.get("kept_step"),
                    f"[jammer]({r.get('artefact')})",
                    f"[start]({r.get('start_artefact')})",
                ]
            )
            for i, v in enumerate(r.get("losses") or []):
                curves.append(
                    {"model": r["model"], "level": f"{r.get('level_db'):g} dB", "step": i, "loss": v}
                )
        blocks.append(
            Table(
                ["model", "level dB", "loss at start", "loss at end", "steps", "kept step", "audio", "start"],
                table_rows,
            )
        )
        if curves:
            df = pd.DataFrame(curves)
            df["loss"] = df.groupby(["model", "level"])["loss"].transform(
                lambda s: s.rolling(10, min_periods=1).mean()
            )
            blocks.append(
                figures.curves(
                    df,
                    x="step",
                    y="loss",
                    hue="level",
                    facet="model",
                    ci=None,
                    name="jammer_optimisation",
                    title="Jammer optimisation (loss, running mean of 10)",
                    xlabel="Adam step",
                    ylabel="balanced cross-entropy",
                    ylim=None,
                )
            )
        first = jam[0]
        notes = first.get("notes") or []
        blocks.append(
            Table(
                ["onset s", "duration s", "f0 Hz", "MIDI", "amplitude", "decay s", "damping"],
                [
                    [
                        n.get("onset_s"),
                        n.get("duration_s"),
                        n.get("f0_hz"),
                        n.get("midi"),
                        n.get("amplitude"),
                        n.get("decay_s"),
                        n.get("damping"),
                    ]
                    for n in notes
                ],
                f"Notes of the jammer of {first['model']} at {first.get('level_db'):g} dB (by onset)",
            )
        )
        return Section("The jammers", blocks, level=3)

    def _rooms(self, r: Mapping[str, Any]) -> Section:
        table_rows = []
        for which in ("optimisation", "held_out"):
            for s in r.get(which) or []:
                dims = s.get("dims") or []
                table_rows.append(
                    [
                        which.replace("_", "-"),
                        s.get("index"),
                        " x ".join(f"{d:.2f}" for d in dims),
                        s.get("rt60"),
                        s.get("measured_rt60"),
                        s.get("absorption"),
                        ", ".join(str(v) for v in s.get("strata") or []),
                    ]
                )
        return Section(
            "Rooms",
            [
                "Shoebox rooms (pyroomacoustics image source; talker = source 0, loudspeaker = source 1). "
                "Latin-hypercube draw: every room owns a stratum of RT60, length, width and height that no "
                "other room shares, so each held-out room differs from every optimisation room in all four "
                "by construction; positions are drawn per room. Design RT60 sets the absorption (Sabine); "
                "'measured' is the T30 of the talker's RIR.",
                Table(
                    [
                        "set",
                        "room",
                        "size m",
                        "design RT60 s",
                        "measured RT60 s",
                        "absorption",
                        "strata (RT60, L, W, H)",
                    ],
                    table_rows,
                ),
            ],
            level=3,
        )


def _synth_text(s: Mapping[str, Any]) -> str:
    return (
        f"{s.get('notes')} notes x {s.get('harmonics')} partials, {s.get('seconds')} s looped, "
        f"{s.get('sample_rate')} Hz"
    )


def compare(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> str | None:
    """``"lower"`` / ``"higher"`` when the 95% intervals of rows ``a`` and ``b`` are disjoint,
    ``"overlapping"`` when they are not, None when either lacks an interval."""
    a, b = a or {}, b or {}
    if None in (a.get("ci_low"), a.get("ci_high"), b.get("ci_low"), b.get("ci_high")):
        return None
    if a["ci_high"] < b["ci_low"]:
        return "lower"
    if a["ci_low"] > b["ci_high"]:
        return "higher"
    return "overlapping"


def _verdict(by: Mapping[str, Mapping[str, Any]]) -> str:
    """Plain comparison of the jammer with the baselines (a difference is claimed only for disjoint CIs)."""

    def v(c: str) -> Any:
        return (by.get(c) or {}).get("value")

    parts = []
    if v("room_clean") is not None and v("jammer") is not None:
        parts.append(f"F1 {v('room_clean'):.3f} without -> {v('jammer'):.3f} with the jammer")
    words = {
        "lower": "lower than",
        "higher": "higher than (the jammer is less effective than)",
        "overlapping": "not distinguishable from (overlapping CIs)",
        None: "vs",
    }
    for base, name in (("random_music", "random music"), ("white_noise", "white noise")):
        if v(base) is None or v("jammer") is None:
            continue
        parts.append(f"jammer F1 {words[compare(by.get('jammer'), by.get(base))]} {name} ({v(base):.3f})")
    music = compare(by.get("random_music"), by.get("room_clean"))
    if music is not None:
        parts.append(
            "random music itself lowers F1 (the paper found it did not)"
            if music == "lower"
            else "random music does not lower F1 beyond the CI (as in the paper)"
        )
    return "; ".join(parts) or "no comparison possible"


__all__ = ["CONDITIONS", "JammerLayout", "compare"]
