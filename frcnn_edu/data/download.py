"""Opt-in downloads of the real datasets: https only, a checksum checked, archives unpacked safely.

An archive from the internet is untrusted: a member named ``/etc/x`` or ``../../x``, or a link
pointing out of the target folder, would write outside it. Tar files are extracted with
Python's ``filter="data"`` where it exists (3.12, and 3.10.12 / 3.11.4 onwards); on older
versions every member is checked by hand with the same rules (no absolute path, no ``..``, no
link leaving the folder, no device file). Zip members get the path rules (zip has no links).
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
import warnings
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

__all__ = ["download_file", "file_digest", "extract_tar", "extract_zip"]


def file_digest(path, algorithm="sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path, md5=None, sha256=None):
    """Check a pinned checksum; without one, pin the sha256 of the first download beside the
    archive (``<archive>.sha256``) and check later uses against it."""
    for algorithm, want in (("md5", md5), ("sha256", sha256)):
        if want is not None:
            got = file_digest(path, algorithm)
            if got != want.lower():
                raise ValueError(f"{path}: {algorithm} is {got}, expected {want}: the download is "
                                 "damaged or not the published file; delete it and download again")
            return
    pin = Path(str(path) + ".sha256")
    got = file_digest(path)
    if pin.exists():
        want = pin.read_text().strip()
        if got != want:
            raise ValueError(f"{path}: sha256 is {got}, but {pin} recorded {want} at the first "
                             "download: the file changed; delete both and download again")
        return
    pin.write_text(got + "\n")
    warnings.warn(f"{path}: no published checksum is known; its sha256 {got} was recorded in {pin} "
                  "and later uses are checked against it", stacklevel=3)


def download_file(url, root, md5=None, sha256=None) -> Path:
    """Download `url` (https only) into folder `root` unless already there; check its checksum
    (`md5` or `sha256`; see `_verify` when neither is known). Returns the file's path."""
    if not url.startswith("https://"):
        raise ValueError(f"url must use https (so the download cannot be altered on the way), got {url}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / url.rsplit("/", 1)[1]
    if not path.exists():
        print(f"downloading {url} -> {path}")
        tmp = path.with_name(path.name + ".part")
        urllib.request.urlretrieve(url, tmp)
        tmp.replace(path)  # a broken download never sits under the final name
    _verify(path, md5, sha256)
    return path


def _check_member_name(archive, name) -> None:
    """Refuse absolute paths and `..` (POSIX or Windows spelling)."""
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            raise ValueError(f"{archive}: member {name!r} would be written outside the target "
                             "folder (absolute path or '..'); the archive is not safe to extract")


def _inside(root, path) -> bool:
    root = os.path.realpath(root)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _checked_tar_members(archive, tar, root):
    """The members of `tar`, each checked like Python's "data" filter (for older Pythons)."""
    members = tar.getmembers()
    for m in members:
        _check_member_name(archive, m.name)
        if m.isdev() or m.isfifo():
            raise ValueError(f"{archive}: member {m.name!r} is a device or pipe; not extracted")
        if m.issym() or m.islnk():
            base = root / Path(m.name).parent if m.issym() else root
            if os.path.isabs(m.linkname) or not _inside(root, base / m.linkname):
                raise ValueError(f"{archive}: link {m.name!r} -> {m.linkname!r} points outside "
                                 "the target folder; the archive is not safe to extract")
    return members


def extract_tar(archive, root) -> Path:
    """Extract a tar archive into `root`, refusing members that would land outside it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():  # the same refusal on every Python (the filter would strip "/")
            _check_member_name(archive, m.name)
        if hasattr(tarfile, "data_filter"):
            try:
                tar.extractall(root, filter="data")
            except tarfile.FilterError as e:
                raise ValueError(f"{archive}: {e}; the archive is not safe to extract") from None
        else:
            tar.extractall(root, members=_checked_tar_members(archive, tar, root))
    return root


def extract_zip(archive, root) -> Path:
    """Extract a zip archive into `root`, refusing absolute member paths and `..`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _check_member_name(archive, info.filename)
        zf.extractall(root)
    return root
