"""The local cloud's own key pair: generated at its first start, readable by its owner only.

Every request to the local cloud is SigV4-signed, and the signature is checked against
this secret, so a process of another user (or a web page) that cannot read the owner's
data dir cannot drive it. One key pair per data dir (``imgcli local reset`` discards it
with the rest), made with ``secrets`` and kept in ``<data dir>/localcloud/secret.json``,
mode 0600, in a directory of mode 0700. The same secret keys the HMACs that authenticate
the snapshot, the journal and the health answer (``OwnerKey.derived``, one key per use).

The directory is refused, rather than repaired, when it belongs to another user or when
others may write to it: whoever can write there can plant a state file the server would
load, or read the secret back. So is one inside a directory others may write to (without
the sticky bit of /tmp), or owned by another user but root: they could swap ours for
theirs. Group-writable parents are accepted, as distributions with a private group per
user make them. A directory of ours that others may only read (earlier versions made the
data dir 0755 and its files 0644) is tightened: ``make_private`` walks it at every start,
never following a link, and refuses anything in it that belongs to another user.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Final

from imgcli.errors import ExitCode, ImgcliError

SECRET_FILE: Final = "secret.json"  # noqa: S105 - a file name
#: AWS's temporary keys start ASIA and long-term ones AKIA; ours say what they are.
ACCESS_KEY_PREFIX: Final = "LKIA"


class UnsafeDataDir(ImgcliError):
    """The local cloud's data dir (or its secret) could be read or written by someone else."""

    exit_code: ClassVar[ExitCode] = ExitCode.AUTH


@dataclass(frozen=True)
class OwnerKey:
    """The owner's key pair for one local cloud."""

    access_key_id: str
    secret_access_key: str = field(repr=False)

    def derived(self, purpose: str) -> bytes:
        """A key of its own for ``purpose`` (``"snapshot"``, ``"journal"``, ``"health"``)."""
        label = b"imgcli-localcloud:" + purpose.encode()
        return hmac.new(self.secret_access_key.encode(), label, hashlib.sha256).digest()


def local_cloud_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The local cloud's data dir: its secret, state, log and the functions' code."""
    from imgcli.infra.state import data_dir

    return data_dir(environ) / "localcloud"


def ensure_private_directory(directory: Path) -> None:
    """Create ``directory`` (0700) or check that only its owner, us, can use it.

    Raises ``UnsafeDataDir`` when it belongs to another user or others may write to it.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeDataDir(
            f"{directory} is not a directory of its own (a link or a file)",
            hint="remove it, or point IMGCLI_DATA_DIR elsewhere",
        )
    if info.st_uid != os.geteuid():
        raise UnsafeDataDir(
            f"the local cloud's data dir {directory} belongs to another user (uid {info.st_uid})",
            hint="point IMGCLI_DATA_DIR at a directory of your own",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeDataDir(
            f"others may write to the local cloud's data dir {directory} "
            f"(mode {stat.S_IMODE(info.st_mode):o}), so they could plant state it would load",
            hint=f"check its contents, then `chmod 700 {directory}`",
        )
    if info.st_mode & 0o077:
        directory.chmod(0o700)
    _check_parents(directory)


def make_private(directory: Path) -> None:
    """Take group and other permissions off everything under ``directory``.

    Links are neither followed nor changed (a link's own mode means nothing); an entry
    that belongs to another user raises ``UnsafeDataDir``, as someone else wrote there.
    """
    me = os.geteuid()
    for top, dirs, names, top_fd in os.fwalk(directory, follow_symlinks=False):
        info = os.fstat(top_fd)
        _refuse_foreign(Path(top), info, me)
        if info.st_mode & 0o077:
            os.fchmod(top_fd, stat.S_IMODE(info.st_mode) & 0o700)
        for name in [*dirs, *names]:
            try:
                info = os.stat(name, dir_fd=top_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone meanwhile (a finished worker's scratch file)
            _refuse_foreign(Path(top) / name, info, me)
            kind = stat.S_IFMT(info.st_mode)
            if kind not in (stat.S_IFLNK, stat.S_IFDIR) and info.st_mode & 0o077:
                # Directories get theirs from their own turn of the walk. Only we may
                # write here (checked first), so the name is still what was stat'ed.
                os.chmod(name, stat.S_IMODE(info.st_mode) & 0o700, dir_fd=top_fd)


def _refuse_foreign(path: Path, info: os.stat_result, me: int) -> None:
    if info.st_uid != me:
        raise UnsafeDataDir(
            f"{path} in the local cloud's data dir belongs to another user (uid {info.st_uid})",
            hint="someone else wrote there: check it, then remove it or run `imgcli local reset`",
        )


def _check_parents(directory: Path) -> None:
    me = os.geteuid()
    for parent in Path(os.path.realpath(directory)).parents:
        info = parent.stat()
        if info.st_uid not in (me, 0):
            raise UnsafeDataDir(
                f"the local cloud's data dir {directory} is inside {parent}, "
                f"which belongs to another user (uid {info.st_uid}), who could swap it for theirs",
                hint="point IMGCLI_DATA_DIR at a directory of your own",
            )
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            raise UnsafeDataDir(
                f"the local cloud's data dir {directory} is inside {parent}, which anyone may "
                f"write to (mode {stat.S_IMODE(info.st_mode):o}), so they could swap it for theirs",
                hint="point IMGCLI_DATA_DIR at a directory of your own",
            )


def load_or_create(directory: Path) -> OwnerKey:
    """The key pair kept in ``directory``, created on first use."""
    ensure_private_directory(directory)
    path = directory / SECRET_FILE
    existing = _read(path)
    if existing is not None:
        return existing
    key = OwnerKey(_new_access_key_id(), secrets.token_urlsafe(30))
    temporary = directory / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(
                {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key},
                file,
            )
            file.flush()
            os.fsync(file.fileno())
        # link() fails if another start created it first: theirs wins, for both.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    winner = _read(path)
    if winner is None:
        raise UnsafeDataDir(f"the local cloud's secret {path} could not be written")
    return winner


def read_for_reset(directory: Path) -> OwnerKey | None:
    """The key pair in ``directory`` even if others could read it; ``None`` if there is none
    or it is not the owner's own (another user's file, or damaged).

    Only for ``imgcli local reset``, which discards it: the local cloud still running with
    an exposed secret can then be stopped by its proof before a new secret is made.
    """
    try:
        return _read(directory / SECRET_FILE, exposed_ok=True)
    except UnsafeDataDir:
        return None


def _read(path: Path, *, exposed_ok: bool = False) -> OwnerKey | None:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UnsafeDataDir(f"cannot read the local cloud's secret {path}: {error}") from error
    with os.fdopen(descriptor) as file:
        info = os.fstat(file.fileno())
        if info.st_uid != os.geteuid():
            raise UnsafeDataDir(
                f"the local cloud's secret {path} belongs to another user (uid {info.st_uid})",
                hint="run `imgcli local reset` to make a new one",
            )
        if info.st_mode & 0o077 and not exposed_ok:
            raise UnsafeDataDir(
                f"the local cloud's secret {path} is readable or writable by others "
                f"(mode {stat.S_IMODE(info.st_mode):o})",
                hint="run `imgcli local reset` to make a new one",
            )
        try:
            fields = json.load(file)
            return OwnerKey(str(fields["access_key_id"]), str(fields["secret_access_key"]))
        except (ValueError, KeyError, TypeError) as error:
            raise UnsafeDataDir(
                f"the local cloud's secret {path} is damaged",
                hint="run `imgcli local reset` to make a new one",
            ) from error


def _new_access_key_id() -> str:
    return ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()
