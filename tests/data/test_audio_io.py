"""Audio I/O: format scaling, mix-down, resampling, clamping and named errors for broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from datatrees import tone, write_wav

from robustlab.data.audio import (
    AudioFileError,
    check_audio_file,
    check_audio_header,
    fix_length,
    load_audio,
    read_audio,
)

SR = 8000


@pytest.mark.parametrize(("subtype", "step"), [("PCM_16", 2.0**-15), ("PCM_24", 2.0**-23),
                                               ("PCM_32", 2.0**-31), ("PCM_U8", 2.0**-7),
                                               ("FLOAT", 0.0), ("DOUBLE", 0.0)])
def test_formats_scale_to_unit_range_within_quantisation(tmp_path: Path, subtype: str, step: float) -> None:
    x = tone(1, 0.05, SR, amp=0.9)
    x[:4] = [-1.0, -0.5, 0.5, 0.0]
    y, sr = load_audio(write_wav(tmp_path / f"{subtype}.wav", x, SR, subtype), None)
    assert sr == SR and y.dtype == torch.float32 and y.shape == (x.size,)
    assert float((y - torch.from_numpy(x)).abs().max()) <= step + 1e-7
    assert y[0] == -1.0  # full scale maps to -1 exactly


def test_int16_and_float_files_agree(tmp_path: Path) -> None:
    x = tone(2, 0.1, SR, amp=0.7)
    a, _ = load_audio(write_wav(tmp_path / "i16.wav", x, SR, "PCM_16"))
    b, _ = load_audio(write_wav(tmp_path / "f32.wav", x, SR, "FLOAT"))
    c, _ = load_audio(write_wav(tmp_path / "x.flac", x, SR, "PCM_16"))
    assert float((a - b).abs().max()) <= 2.0**-15
    assert float((a - c).abs().max()) <= 2.0**-15  # writers may round differently


def test_float_beyond_unit_range_is_clamped(tmp_path: Path) -> None:
    x = np.array([1.5, -2.0, 0.25, 1.0], dtype=np.float32)
    y, _ = load_audio(write_wav(tmp_path / "loud.wav", x, SR, "FLOAT"))
    assert y.tolist() == [1.0, -1.0, 0.25, 1.0]
    assert check_audio_file(tmp_path / "loud.wav") is None


def test_stereo_is_mixed_down_and_48k_resampled(tmp_path: Path) -> None:
    left = tone(3, 0.5, 48000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = write_wav(tmp_path / "st.wav", stereo, 48000, "FLOAT")
    y, sr = load_audio(path)
    assert sr == 48000 and torch.allclose(y, torch.from_numpy(left) / 2, atol=1e-6)
    z, sr2 = load_audio(path, sample_rate=8000)
    assert sr2 == 8000 and z.shape == (4000,)
    assert check_audio_file(path) is None


def _broken(tmp_path: Path) -> dict[str, Path]:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunk" * 4)
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), SR)
    nan = tone(4, 0.05, SR)
    nan[10] = np.nan
    nan[11] = np.inf
    return {"corrupt": corrupt, "zero": zero_bytes, "empty": empty,
            "nan": write_wav(tmp_path / "nan.wav", nan, SR, "FLOAT"), "missing": tmp_path / "missing.wav"}


@pytest.mark.parametrize(("kind", "words"), [("corrupt", "unreadable or corrupt"), ("zero", "0 bytes"),
                                             ("empty", "0 audio frames"), ("nan", "NaN/Inf samples (2 of"),
                                             ("missing", "not found")])
def test_broken_files_raise_named_errors(tmp_path: Path, kind: str, words: str) -> None:
    path = _broken(tmp_path)[kind]
    with pytest.raises(AudioFileError) as info:
        load_audio(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == str(path) and str(path) in str(err) and words in str(err)
    assert words in (check_audio_file(path) or "")
    with pytest.raises(AudioFileError):
        read_audio(path)


def test_header_check_finds_all_but_nan(tmp_path: Path) -> None:
    broken = _broken(tmp_path)
    for kind in ("corrupt", "zero", "empty", "missing"):
        assert check_audio_header(broken[kind])[0] is not None
    assert check_audio_header(broken["nan"]) == (None, SR)


def test_fix_length_examples() -> None:
    x = torch.arange(1.0, 7.0)
    assert fix_length(x, 8).tolist() == [1, 2, 3, 4, 5, 6, 0, 0]
    assert fix_length(x, 4).tolist() == [1, 2, 3, 4]
    assert fix_length(x, 4, crop="centre").tolist() == [2, 3, 4, 5]
    assert fix_length(x, 6) is x
    assert fix_length(torch.ones(2, 3), 5).shape == (2, 5)
    with pytest.raises(ValueError, match="crop"):
        fix_length(x, 4, crop="end")
    with pytest.raises(ValueError, match=">= 1"):
        fix_length(x, 0)


def test_audio_file_error_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(AudioFileError("/x/a.wav", "empty: 0 audio frames")))
    assert err.path == "/x/a.wav" and err.problem == "empty: 0 audio frames"
    assert str(err) == "/x/a.wav: empty: 0 audio frames"


def test_unsupported_extension_is_a_decode_problem(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is text, not audio\n" * 20)
    assert "unreadable or corrupt" in check_audio_file(path)
    assert sf.available_formats()  # soundfile itself works
