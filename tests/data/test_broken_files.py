"""A folder with good clips plus a corrupt, an empty, a NaN and a (valid) 48 kHz stereo file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datatrees import tone, write_wav

import robustlab.data as rd
from robustlab.data.audio import AudioFileError

SR = 8000
BROKEN = {"corrupt.wav", "empty.wav", "nan.wav"}


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    root = tmp_path / "messy"
    for c, name in enumerate(("a", "b")):
        for i in range(3):
            write_wav(root / name / f"good_{i}.wav", tone(10 * c + i, 0.2, SR), SR)
    (root / "a" / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 8)
    write_wav(root / "a" / "empty.wav", np.zeros(0, dtype=np.float32), SR)
    nan = tone(7, 0.2, SR)
    nan[100:110] = np.nan
    write_wav(root / "b" / "nan.wav", nan, SR, "FLOAT")
    stereo = np.stack([tone(8, 0.2, 48000), tone(9, 0.2, 48000)], axis=1)
    write_wav(root / "b" / "stereo48k.wav", stereo, 48000, "PCM_16")
    return root


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "robustlab.data", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_check_cli_names_exactly_the_broken_files(messy: Path) -> None:
    proc = _cli("check", "folder", "--root", str(messy), "--json", "clip_seconds=0.25")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)  # one JSON object
    assert {Path(p["file"]).name for p in report["problems"]} == BROKEN
    assert len(report["problems"]) == 3
    problems = {Path(p["file"]).name: p["problem"] for p in report["problems"]}
    assert "corrupt" in problems["corrupt.wav"] and "0 audio frames" in problems["empty.wav"]
    assert "NaN" in problems["nan.wav"]
    assert report["n_items"] == 7 and sum(report["splits"].values()) == 7
    assert report["sample_rate"] == SR and report["num_classes"] == 2
    assert report["name"] == "folder" and len(report["fingerprint"]) == 16
    assert "Traceback" not in proc.stderr


def test_skip_loads_the_rest_and_raise_names_the_file(messy: Path) -> None:
    ds = rd.get("folder", "all", root=messy, on_error="skip", clip_seconds=0.25)
    assert len(ds) == 7 and {Path(p["file"]).name for p in ds.problems} == BROKEN
    assert {f.name for f in ds.files} == {f"good_{i}.wav" for i in range(3)} | {"stereo48k.wav"}
    stereo = ds[[f.name for f in ds.files].index("stereo48k.wav")]["audio"]
    assert stereo.shape == (2000,) and stereo.abs().max() > 0.1  # resampled 48k -> 8k, then padded
    with pytest.raises(AudioFileError) as info:
        rd.get("folder", "all", root=messy, clip_seconds=0.25)
    assert Path(info.value.path).name in BROKEN and info.value.path in str(info.value)


def test_header_scan_defers_nan_to_item_time(messy: Path) -> None:
    ds = rd.get("folder", "all", root=messy, on_error="skip", scan="header", clip_seconds=0.25)
    assert {Path(p["file"]).name for p in ds.problems} == {"corrupt.wav", "empty.wav"}
    i = [f.name for f in ds.files].index("nan.wav")
    with pytest.raises(AudioFileError, match="NaN"):
        ds[i]
    full = rd.get("folder", "all", root=messy, on_error="skip", clip_seconds=0.25)
    j = [f.name for f in ds.files].index("good_0.wav")
    assert torch.equal(ds[j]["audio"], full[[f.name for f in full.files].index("good_0.wav")]["audio"])
