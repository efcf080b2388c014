"""``python -m robustlab doctor``: load every part of the stack for real; say what is broken and the fix.

Each check exercises its library (a compiled op, a transform, a tiny forward pass, a file round trip), not
just its import, and returns a `Finding`: ``ok`` (works), ``fail`` (broken: robustlab cannot work as
installed; the finding names the fix), ``warn`` (works, but differs from what robustlab was tested with) or
``skip`` (an optional part that is not installed). The report also gives versions, threads, devices, the
data and home folders and which datasets are present. The exit code is 1 when any check fails.

Example:
    $ python -m robustlab doctor
    $ python -m robustlab doctor --json
"""

from __future__ import annotations

import importlib
import io
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import stack

STATUSES = ("ok", "warn", "skip", "fail")
REINSTALL = 'python -m pip install -c requirements.lock -e ".[dev]"  (from the robustlab checkout)'


@dataclass
class Finding:
    """Outcome of one check.

    Attributes:
        name: the part checked (``torchaudio``, ``soundfile``, ...).
        status: ``ok``, ``warn``, ``skip`` or ``fail``.
        detail: one line: what was exercised, or what went wrong.
        fix: the command or action that repairs a failure ("" when nothing is needed).
        version: the installed version, when the part is a package.
        seconds: time the check took.
    """

    name: str
    status: str
    detail: str
    fix: str = ""
    version: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """The one-line text form: ``FAIL torchaudio 2.11.1: ... -- fix: ...``."""
        ver = f" {self.version}" if self.version else ""
        fix = f" -- fix: {self.fix}" if self.fix and self.status in ("fail", "warn") else ""
        return f"{self.status.upper():<4} {self.name}{ver}: {self.detail}{fix}"


class CheckFailed(Exception):
    """Raised by a check body for a failure it diagnosed itself (message = detail, ``fix`` = the repair)."""

    def __init__(self, detail: str, fix: str = "") -> None:
        super().__init__(detail)
        self.fix = fix


def _import(name: str) -> Any:
    """Import a module through `importlib` (the torch family through `robustlab.stack`)."""
    if name in stack.FAMILY:
        return stack.load(name)
    return importlib.import_module(name)


# --------------------------------------------------------------------------------------------- the checks
def _check_torch() -> str:
    torch = _import("torch")
    x = torch.randn(64, 32, requires_grad=True)
    w = torch.randn(32, 8)
    (x @ w).tanh().sum().backward()
    if x.grad is None or not bool(torch.isfinite(x.grad).all()):
        raise CheckFailed("autograd produced no finite gradient", REINSTALL)
    y = torch.fft.irfft(torch.fft.rfft(torch.randn(4, 256)), n=256)
    if y.shape != (4, 256):
        raise CheckFailed(f"fft round trip gave shape {tuple(y.shape)}", REINSTALL)
    return f"matmul, autograd and FFT ran; {torch.get_num_threads()} intra-op threads"


def _check_family() -> str:
    bad = stack.mismatches()
    if bad:
        have = ", ".join(f"{k} {v[0] or 'not installed'} (needs {v[1]})" for k, v in bad.items())
        raise CheckFailed(f"torch family differs from robustlab's pins: {have}", stack.fix_command())
    return ", ".join(f"{k}=={v}" for k, v in stack.pinned_versions().items()) + " as pinned"


def _check_torchaudio() -> str:
    torch = _import("torch")
    ta = _import("torchaudio")
    wave = torch.randn(2, 8000)
    mel = ta.transforms.MelSpectrogram(sample_rate=8000, n_fft=256, n_mels=40)(wave)
    fb = ta.compliance.kaldi.fbank(wave[:1], sample_frequency=8000, num_mel_bins=40)
    res = ta.functional.resample(wave, 8000, 16000)
    conv = ta.functional.fftconvolve(wave, torch.randn(2, 64))
    lf = ta.functional.lfilter(wave, torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]))
    shapes = (tuple(mel.shape), tuple(fb.shape), tuple(res.shape), tuple(conv.shape), tuple(lf.shape))
    if shapes[2] != (2, 16000) or shapes[3] != (2, 8063):
        raise CheckFailed(f"unexpected output shapes {shapes}", stack.fix_command())
    return "mel spectrogram, Kaldi fbank, resample, fftconvolve and the compiled lfilter ran"


def _check_torchvision() -> str:
    torch = _import("torch")
    tv = _import("torchvision")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    keep = tv.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    if keep.tolist() != [0, 2]:
        raise CheckFailed(f"torchvision.ops.nms returned {keep.tolist()}, expected [0, 2]",
                          stack.fix_command())
    net = tv.models.resnet18(num_classes=3).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 32, 32))
    if out.shape != (1, 3):
        raise CheckFailed(f"resnet18 output shape {tuple(out.shape)}", stack.fix_command())
    return "compiled nms op and a resnet18 forward ran"


def _check_torchattacks() -> str:
    torch = _import("torch")
    ta = _import("torchattacks")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    adv = ta.PGD(net, eps=0.1, alpha=0.05, steps=2)(x, y)
    if float((adv - x).abs().max()) > 0.1 + 1e-6:
        raise CheckFailed("PGD left its L-inf ball", REINSTALL)
    return "a 2-step PGD ran on a toy model"


def _check_transformers() -> str:
    torch = _import("torch")
    tr = _import("transformers")
    cfg = tr.ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       num_mel_bins=32, max_length=32, patch_size=16, frequency_stride=16, time_stride=16)
    model = tr.ASTModel(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 32, 32)).last_hidden_state
    return f"a tiny AST forward ran (hidden {tuple(out.shape)})"


def _check_soundfile() -> str:
    np = _import("numpy")
    sf = _import("soundfile")
    formats = sf.available_formats()
    sig = (0.5 * np.sin(np.linspace(0, 200 * np.pi, 8000))).astype("float32")
    done = []
    for fmt, sub in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")):
        if fmt not in formats:
            raise CheckFailed(f"libsndfile {sf.__libsndfile_version__} cannot write {fmt}",
                              "python -m pip install --force-reinstall soundfile  (its wheel bundles "
                              "libsndfile)")
        buf = io.BytesIO()
        sf.write(buf, sig, 8000, format=fmt, subtype=sub)
        buf.seek(0)
        back, sr = sf.read(buf, dtype="float32")
        if sr != 8000 or back.shape != sig.shape:
            raise CheckFailed(f"{fmt} round trip gave {back.shape} at {sr} Hz")
        done.append(fmt)
    return f"libsndfile {sf.__libsndfile_version__}: {', '.join(done)} written and read back"


def _check_pyroomacoustics() -> str:
    np = _import("numpy")
    pra = _import("pyroomacoustics")
    room = pra.ShoeBox([4.0, 3.0, 2.5], fs=8000, materials=pra.Material(0.4), max_order=3)
    room.add_source([1.0, 1.0, 1.2])
    room.add_microphone([3.0, 2.0, 1.2])
    room.compute_rir()
    rir = np.asarray(room.rir[0][0])
    if rir.size == 0 or not np.isfinite(rir).all():
        raise CheckFailed("the simulated impulse response is empty or not finite")
    return f"a shoebox room impulse response was simulated ({rir.size} taps)"


def _check_faiss() -> str:
    np = _import("numpy")
    faiss = _import("faiss")
    xb = np.random.default_rng(0).standard_normal((200, 16)).astype("float32")
    index = faiss.IndexFlatL2(16)
    index.add(xb)
    _, idx = index.search(xb[:5], 1)
    if idx[:, 0].tolist() != [0, 1, 2, 3, 4]:
        raise CheckFailed(f"exact kNN returned {idx[:, 0].tolist()}")
    return "an exact flat index found every point's own nearest neighbour"


def _check_diffusers() -> str:
    torch = _import("torch")
    diffusers = _import("diffusers")
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    with torch.no_grad():
        out = unet(torch.randn(1, 1, 16, 16), 10).sample
    return f"a tiny UNet2DModel forward ran ({tuple(out.shape)})"


@dataclass(frozen=True)
class Check:
    """One part of the stack: its package (for the version), whether robustlab needs it, and the probe."""

    name: str
    package: str | None
    required: bool
    probe: Callable[[], str]
    extra: str = ""  # the pip extra that installs an optional part


CHECKS: tuple[Check, ...] = (
    Check("torch", "torch", True, _check_torch),
    Check("torch family pins", None, True, _check_family),
    Check("torchaudio", "torchaudio", True, _check_torchaudio),
    Check("torchvision", "torchvision", True, _check_torchvision),
    Check("torchattacks", "torchattacks", True, _check_torchattacks),
    Check("transformers", "transformers", True, _check_transformers),
    Check("soundfile", "soundfile", True, _check_soundfile),
    Check("pyroomacoustics", "pyroomacoustics", True, _check_pyroomacoustics),
    Check("faiss", "faiss-cpu", True, _check_faiss),
    Check("diffusers", "diffusers", True, _check_diffusers),
)


def run_check(check: Check) -> Finding:
    """Run one check; any exception becomes a ``fail`` finding (``skip`` for an absent optional part)."""
    version = stack.installed_version(check.package) if check.package else None
    if not check.required and version is None:
        return Finding(check.name, "skip", f"optional, not installed (pip install -e \".[{check.extra}]\")")
    t0 = time.perf_counter()
    try:
        detail = check.probe()
        status, fix = "ok", ""
    except CheckFailed as err:
        status, detail, fix = "fail", str(err), err.fix
    except stack.StackError as err:
        status, detail, fix = "fail", str(err).split("; fix: ")[0].removeprefix("robustlab: "), \
            stack.fix_command()
    except Exception as err:  # noqa: BLE001 -- any failure of a probe is the finding
        reason = " ".join(str(err).split())[:200]
        status, detail = "fail", f"{type(err).__name__}: {reason}"
        fix = stack.fix_command() if check.package in stack.FAMILY else (
            f"python -m pip install --force-reinstall {check.package}" if check.package else REINSTALL)
    if status == "fail" and not check.required:
        status = "warn"
    return Finding(check.name, status, detail, fix, version, round(time.perf_counter() - t0, 3))


def datasets_present(data_root: str | None) -> dict[str, str]:
    """Which datasets robustlab can read from ``data_root`` (layouts of the README), by name."""
    out = {"synth-av": "generated by the package (no files needed)"}
    if not data_root:
        return {**out, "(files)": "ROBUSTLAB_DATA is not set: fsdd, av-digits, esc50, speechcommands "
                                  "unavailable"}
    root = Path(data_root)
    if not root.is_dir():
        return {**out, "(files)": f"ROBUSTLAB_DATA={data_root} is not a folder"}
    recordings = root / "fsdd" / "recordings"
    wavs = len(list(recordings.glob("*.wav"))) if recordings.is_dir() else 0
    out["fsdd"] = f"{wavs} recordings" if wavs else "absent (fsdd/recordings/*.wav)"
    mnist = all((root / "mnist" / f"t10k-{kind}-idx{d}-ubyte.gz").is_file() for kind, d in
                (("images", 3), ("labels", 1)))
    out["av-digits"] = "present (fsdd + mnist)" if wavs and mnist else "absent (needs fsdd/, mnist/t10k-*.gz)"
    out["esc50"] = "present" if (root / "esc50" / "meta" / "esc50.csv").is_file() else "absent"
    out["speechcommands"] = "present" if (root / "speechcommands").is_dir() else "absent"
    return out


def environment() -> dict[str, Any]:
    """Python, platform, threads, devices, ROBUSTLAB_DATA / ROBUSTLAB_HOME and the datasets present."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count()}
    try:
        torch = stack.load("torch")
        info["threads"] = torch.get_num_threads()
        info["cuda"] = bool(torch.cuda.is_available())
        info["devices"] = ["cpu"] + [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as err:  # noqa: BLE001 -- reported by the torch check as well
        info["devices"] = f"unknown ({type(err).__name__})"
    data = os.environ.get("ROBUSTLAB_DATA")
    from .paths import home

    info["ROBUSTLAB_DATA"] = data
    info["ROBUSTLAB_HOME"] = str(home(create=False))
    info["datasets"] = datasets_present(data)
    return info


def diagnose(checks: tuple[Check, ...] = CHECKS) -> dict[str, Any]:
    """Run every check; returns ``{"ok": bool, "findings": [...], "environment": {...}}`` (JSON-able)."""
    findings = [run_check(c) for c in checks]
    return {"ok": not any(f.status == "fail" for f in findings),
            "findings": [asdict(f) for f in findings], "environment": environment()}


def render(report: dict[str, Any]) -> str:
    """The human-readable report: one line per finding, then the environment, then the verdict."""
    lines = [Finding(**f).line() for f in report["findings"]]
    env = report["environment"]
    lines.append("")
    lines.append(f"python {env['python']} on {env['platform']}, {env['cpu_count']} CPUs, "
                 f"{env.get('threads', '?')} torch threads, devices: {env['devices']}")
    lines.append(f"ROBUSTLAB_DATA = {env['ROBUSTLAB_DATA'] or '(not set)'}")
    lines.append(f"ROBUSTLAB_HOME = {env['ROBUSTLAB_HOME']}")
    lines += [f"  {name:<15} {state}" for name, state in env["datasets"].items()]
    failed = [f for f in report["findings"] if f["status"] == "fail"]
    lines.append("")
    if failed:
        lines.append("broken: " + "; ".join(f"{f['name']} ({f['fix'] or 'see above'})" for f in failed))
    else:
        lines.append("robustlab's stack works.")
    return "\n".join(lines)
