"""The code bundle both Lambda functions run: a deterministic zip of ``lambdas/``.

Why this module exists: packaging is where serverless deploy tools fail quietly. Chalice,
the bar issue 3 sets, has two known faults here, and this module is built against both.

1. **Native wheels for the wrong platform.** A zip built from the developer's own
   site-packages ships a Pillow compiled for their machine (macOS, x86-64 Linux, Python
   3.11...), and the function then dies on ``import PIL`` in the cloud. Here the AWS bundle
   never looks at the host's Pillow: it vendors Pillow from the manylinux wheel for the
   function's architecture and runtime, fetched with ``pip download --only-binary=:all:
   --platform ... --python-version ... --implementation cp --abi ...`` (:func:`pip_download_args`
   builds the exact command). The version is the one the CLI itself has installed, so the
   code that indexes images in the cloud reads them with the same Pillow the CLI tests
   with. The platform tags follow the runtime's glibc (Amazon Linux 2 for python3.11 and
   older, Amazon Linux 2023 from python3.12), newest first, which is the order pip itself
   prefers on that system. Pip's choice is then checked, not trusted: every native binary
   that goes into the zip (an ELF header, or a ``.so`` name) must be a 64-bit little-endian
   ELF for the chosen architecture, and no extension module may carry a CPython tag for
   another Python; otherwise the build fails with :class:`PackagingError` naming the file.
2. **Re-uploading unchanged code.** The zip is byte-for-byte a function of its inputs:
   entries sorted, every timestamp 1980-01-01 00:00:00, permissions fixed (0o644 files,
   0o755 directories and native binaries, as Lambda asks for), DEFLATE at a fixed level,
   no host-dependent metadata. :attr:`FunctionBundle.sha256` is in exactly the format
   Lambda reports as ``CodeSha256`` (base64 of the SHA-256 digest), so bootstrap compares
   the two and uploads only when they differ. Caveat: DEFLATE output depends on the zlib
   implementation, so a build on a machine with another zlib (zlib-ng) may differ, which
   costs one redundant upload, never a wrong one.

Targets: ``local`` is just ``lambdas/``, because the local cloud runs the handlers with the
host's Python and Pillow. ``aws`` adds the wheel's contents at the zip root (``PIL/``,
``pillow.libs/``, ``pillow-X.dist-info/`` with its licences), so ``import PIL`` works in
``/var/task``. Wheels are cached per Pillow version, runtime and architecture under the
user cache dir, written there atomically, so a second build runs no pip at all.

Collaborators come in as parameters: ``cache_dir`` for the wheel cache and ``pip`` for the
runner of ``python -m pip``, which tests replace with a recording double. No boto3 here;
bootstrap owns the comparison with the deployed function.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.resources
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final, Literal

from imgcli.infra.errors import PackagingError

LAMBDA_RUNTIME: Final = "python3.13"
"""A current Python runtime that supports arm64 (Amazon Linux 2023)."""

Target = Literal["local", "aws"]
Arch = Literal["arm64", "x86_64"]

PipRunner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
"""Runs ``python -m pip`` with the given arguments and returns its captured outcome."""

ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
COMPRESS_LEVEL: Final = 6
FILE_MODE: Final = 0o644
EXECUTABLE_MODE: Final = 0o755
DIR_MODE: Final = 0o755

_ELF_MAGIC: Final = b"\x7fELF"
_ELF_MACHINES: Final = {
    3: "x86",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390",
    40: "arm",
    62: "x86-64",
    183: "aarch64",
    243: "riscv",
}
# Lambda architecture name -> (ELF e_machine, the name manylinux and CPython use for it).
_ARCHES: Final[dict[str, tuple[int, str]]] = {"arm64": (183, "aarch64"), "x86_64": (62, "x86_64")}
# glibc of the Amazon Linux each Python runtime runs on: AL2 up to python3.11, then AL2023.
_AL2_GLIBC_MINOR: Final = 26
_AL2023_GLIBC_MINOR: Final = 34
_OLDEST_MANYLINUX_MINOR: Final = 17  # manylinux_2_17 == manylinux2014; older tags come via it
_NATIVE_SUFFIXES: Final = (".so", ".pyd", ".dll", ".dylib")
_CPYTHON_TAG: Final = re.compile(r"\.cpython-(?P<tag>[^.]+)\.so$")
_PIP_TAIL_LINES: Final = 3


@dataclass(frozen=True)
class FunctionBundle:
    """A zip ready for ``CreateFunction``/``UpdateFunctionCode``.

    ``sha256`` is base64 of the zip's SHA-256 digest, the format of Lambda's ``CodeSha256``;
    ``description`` says what is inside, for the plan and the logs.
    """

    zip_bytes: bytes
    sha256: str
    description: str


def code_sha256(zip_bytes: bytes) -> str:
    """The zip's digest as Lambda reports it in ``CodeSha256``."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode("ascii")


def run_pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Runs the pip of the interpreter imgcli runs on, capturing its output."""
    # Arguments are built by pip_download_args from validated values; no shell involved.
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def default_wheel_cache() -> Path:
    """``<user cache dir>/imgcli/wheels``, where downloaded wheels are kept between builds."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imgcli")) / "wheels"


def build_function_zip(
    target: Target,
    arch: Arch = "arm64",
    *,
    runtime: str = LAMBDA_RUNTIME,
    cache_dir: Path | None = None,
    pip: PipRunner = run_pip,
) -> FunctionBundle:
    """Builds the code bundle for ``target``; for ``aws``, with Pillow for ``arch``/``runtime``.

    ``cache_dir`` replaces :func:`default_wheel_cache`; ``pip`` replaces :func:`run_pip`.
    Raises :class:`PackagingError` when the wheel can't be fetched or would not run there.
    """
    entries = dict(_lambdas_sources())
    if target == "local":
        return _bundle(entries, "lambdas (local target: Pillow comes from the host)")
    if target != "aws":
        raise PackagingError(f"unknown target {target!r}", hint="use 'local' or 'aws'")
    if arch not in _ARCHES:
        raise PackagingError(f"unknown architecture {arch!r}", hint="use 'arm64' or 'x86_64'")
    python_version = _python_version(runtime)
    version = importlib.metadata.version("pillow")
    wheel = _cached_wheel(
        version, runtime, arch, python_version, cache_dir or default_wheel_cache(), pip
    )
    vendored = dict(_wheel_entries(wheel))
    clash = sorted(entries.keys() & vendored.keys())
    if clash:
        raise PackagingError(
            f"{wheel.name} would overwrite {', '.join(clash)}",
            hint="this is a bug in imgcli's packaging: please report it",
        )
    entries |= vendored
    try:
        check_native_binaries(entries.items(), arch, runtime)
    except PackagingError as error:
        # pip picks the same wheel every time, so deleting it would not help: say where it is.
        raise PackagingError(
            error.message,
            hint=f"it comes from {wheel}; nothing was deployed. Please report this to imgcli",
        ) from None
    machine = _ARCHES[arch][1]
    cp_tag = "cp" + python_version.replace(".", "")
    return _bundle(entries, f"lambdas + Pillow {version} manylinux {machine} {cp_tag}")


def pip_download_args(version: str, runtime: str, arch: Arch, destination: Path) -> list[str]:
    """The arguments of ``python -m pip`` that fetch Pillow's wheel for the function."""
    python_version = _python_version(runtime)
    cp_tag = "cp" + python_version.replace(".", "")
    machine = _ARCHES[arch][1]
    newest = _AL2023_GLIBC_MINOR if int(python_version.split(".")[1]) >= 12 else _AL2_GLIBC_MINOR
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(newest, 16, -1)]
    platforms.append(f"manylinux2014_{machine}")  # pip expands it to manylinux2010/1 on x86
    return [
        "download",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--only-binary=:all:",
        "--no-deps",
        *(arg for platform in platforms for arg in ("--platform", platform)),
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--abi",
        cp_tag,
        "--dest",
        str(destination),
        f"pillow=={version}",
    ]


def check_native_binaries(entries: Iterable[tuple[str, bytes]], arch: Arch, runtime: str) -> None:
    """Refuses any entry that is native code for another platform or another Python.

    Native code is any file with an ELF header and any file named like a shared library.
    Each must be a 64-bit little-endian ELF for ``arch``; an extension module's CPython tag,
    if it has one, must be this runtime's (``cpython-313-aarch64-linux-gnu``).
    """
    wanted_machine, machine_name = _ARCHES[arch]
    python_version = _python_version(runtime)
    wanted_tag = f"{python_version.replace('.', '')}-{machine_name}-linux-gnu"
    for name, data in entries:
        base = name.rsplit("/", 1)[-1]
        named_native = base.endswith(_NATIVE_SUFFIXES) or ".so." in base
        if not (named_native or data.startswith(_ELF_MAGIC)):
            continue
        where = f"{name} (for {arch} {runtime})"
        if not data.startswith(_ELF_MAGIC):
            raise PackagingError(f"{where} is not a Linux (ELF) binary; refusing to ship it")
        if len(data) < 20 or data[4] != 2 or data[5] != 1:
            raise PackagingError(f"{where} is not a 64-bit little-endian ELF binary")
        machine = int.from_bytes(data[18:20], "little")
        if machine != wanted_machine:
            found = _ELF_MACHINES.get(machine, f"ELF machine {machine}")
            raise PackagingError(
                f"{name} is a binary for {found}, but the function runs on {arch} "
                f"({machine_name}); refusing to ship it"
            )
        tagged = _CPYTHON_TAG.search(base)
        if tagged and tagged["tag"] != wanted_tag:
            raise PackagingError(
                f"{name} is built for cpython-{tagged['tag']}, but the function runs "
                f"{runtime} (cpython-{wanted_tag}); refusing to ship it"
            )


def _python_version(runtime: str) -> str:
    match = re.fullmatch(r"python(3\.\d+)", runtime)
    if not match:
        raise PackagingError(
            f"unsupported Lambda runtime {runtime!r}",
            hint=f"use a Python runtime such as {LAMBDA_RUNTIME}",
        )
    return match[1]


def _lambdas_sources() -> Iterator[tuple[str, bytes]]:
    """``lambdas/**/*.py`` from the installed package, wherever and however it is installed."""

    def walk(node: Traversable, prefix: str) -> Iterator[tuple[str, bytes]]:
        for child in node.iterdir():
            if child.is_dir():
                if child.name != "__pycache__":
                    yield from walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".py"):
                yield f"{prefix}{child.name}", child.read_bytes()

    return walk(importlib.resources.files("imgcli.lambdas"), "lambdas/")


def _cached_wheel(
    version: str, runtime: str, arch: Arch, python_version: str, cache_root: Path, pip: PipRunner
) -> Path:
    """Pillow's wheel for this function, downloaded once and then read from the cache."""
    slot = cache_root / f"pillow-{version}" / f"{runtime}-{arch}"
    pattern = f"pillow-{version}-*.whl"
    cached = sorted(slot.glob(pattern))
    if cached:
        return cached[0]
    slot.mkdir(parents=True, exist_ok=True)
    # Download beside the slot and move the wheel in with one rename: an interrupted or
    # concurrent build never leaves a half-written wheel where the next build would use it.
    with tempfile.TemporaryDirectory(dir=slot.parent, prefix=".download-") as scratch:
        args = pip_download_args(version, runtime, arch, Path(scratch))
        outcome = pip(args)
        if outcome.returncode != 0:
            raise PackagingError(
                f"pip could not download Pillow {version} for {runtime} on {arch} "
                f"(exit {outcome.returncode}): {_pip_says(outcome)}",
                hint="check the network connection and pip's index settings (PIP_INDEX_URL, "
                "pip.conf); if pip is missing, install it into imgcli's environment; if no "
                "such wheel exists, use a Pillow version that publishes manylinux wheels for "
                f"cp{python_version.replace('.', '')} {_ARCHES[arch][1]}",
            )
        downloaded = sorted(Path(scratch).glob(pattern))
        if len(downloaded) != 1:
            found = sorted(path.name for path in Path(scratch).iterdir())
            raise PackagingError(
                f"pip reported success but left {found or 'nothing'} instead of one {pattern}",
                hint="run the same download by hand to see what pip does: "
                f"{sys.executable} -m pip {' '.join(args)}",
            )
        final = slot / downloaded[0].name
        downloaded[0].replace(final)
        return final


def _pip_says(outcome: subprocess.CompletedProcess[str]) -> str:
    """pip's error lines, or its last lines when it has none (e.g. "No module named pip")."""
    lines = [line.strip() for line in (outcome.stdout + "\n" + outcome.stderr).splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("ERROR")]
    return " / ".join((errors or lines)[-_PIP_TAIL_LINES:]) or "no output"


def _wheel_entries(wheel: Path) -> Iterator[tuple[str, bytes]]:
    """A wheel's files as pip would install them into site-packages (here: the zip root)."""
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as error:
        raise PackagingError(
            f"the cached wheel {wheel} is unreadable ({error})",
            hint=f"delete {wheel.parent} and build again",
        ) from error
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.filename.split("/", 1)[0].endswith(".data"):
                raise PackagingError(
                    f"{wheel.name} has a .data directory ({info.filename})",
                    hint="imgcli only vendors wheels that install as plain files; "
                    "please report this",
                )
            yield info.filename, archive.read(info)


def _bundle(entries: dict[str, bytes], description: str) -> FunctionBundle:
    zip_bytes = _deterministic_zip(entries)
    return FunctionBundle(
        zip_bytes=zip_bytes, sha256=code_sha256(zip_bytes), description=description
    )


def _deterministic_zip(entries: dict[str, bytes]) -> bytes:
    """The same entries always give the same bytes, on any host, whatever the file system says."""
    directories = {
        "/".join(parts[:depth]) + "/"
        for name in entries
        for parts in [name.split("/")]
        for depth in range(1, len(parts))
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries.keys() | directories):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.create_system = 3  # Unix, so the mode bits below mean what they say
            if name in directories:
                info.external_attr = ((0o040000 | DIR_MODE) << 16) | 0x10  # 0x10: MS-DOS dir
                archive.writestr(info, b"")
                continue
            data = entries[name]
            mode = EXECUTABLE_MODE if data.startswith(_ELF_MAGIC) else FILE_MODE
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue()
