"""The Lambda code bundle: deterministic, and never shipping a binary for the wrong platform.

The AWS builds are real: Pillow's manylinux wheels come from PyPI through pip, once per
test session (a session-scoped wheel cache), so these tests prove the exact pip command
works. Wrong-platform wheels are faked by a pip double that "downloads" a hand-made wheel.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import subprocess
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import PIL
import pytest

from imgcli.infra.errors import PackagingError
from imgcli.infra.packaging import (
    LAMBDA_RUNTIME,
    Arch,
    FunctionBundle,
    build_function_zip,
    code_sha256,
    run_pip,
)
from imgcli.infra.resources import RETRIEVE_HANDLER, SAVE_HANDLER

PILLOW_VERSION = importlib.metadata.version("pillow")
ELF_MACHINES = {"arm64": 183, "x86_64": 62}
TRIPLETS = {"arm64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}


@dataclass
class RecordingPip:
    """Records every pip invocation; runs the real pip, or drops a given wheel into --dest."""

    wheel: tuple[str, bytes] | None = None
    returncode: int = 0
    stderr: str = ""
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args))
        if self.wheel is None and self.returncode == 0:
            return run_pip(args)
        if self.wheel is not None:
            name, data = self.wheel
            (Path(args[args.index("--dest") + 1]) / name).write_bytes(data)
        return subprocess.CompletedProcess(list(args), self.returncode, "", self.stderr)


@dataclass(frozen=True)
class AwsBuild:
    bundle: FunctionBundle
    pip_calls: list[list[str]]


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheel-cache")


@pytest.fixture(scope="session")
def aws_builds(wheel_cache: Path) -> dict[str, AwsBuild]:
    arches: tuple[Arch, ...] = ("arm64", "x86_64")
    builds: dict[str, AwsBuild] = {}
    for arch in arches:
        pip = RecordingPip()
        bundle = build_function_zip("aws", arch, cache_dir=wheel_cache, pip=pip)
        builds[arch] = AwsBuild(bundle, pip.calls)
    return builds


def entries(bundle: FunctionBundle) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def elf_header(machine: int) -> bytes:
    """A 64-byte ELF64 little-endian header for a shared object on ``machine``."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, LE, version 1, SysV
    rest = (
        (3).to_bytes(2, "little")  # e_type: ET_DYN
        + machine.to_bytes(2, "little")
        + (1).to_bytes(4, "little")  # e_version
        + bytes(24)  # e_entry, e_phoff, e_shoff
        + bytes(4)  # e_flags
        + (64).to_bytes(2, "little")  # e_ehsize
        + bytes(10)  # e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    )
    header = ident + rest
    assert len(header) == 64
    return header


def fake_wheel(files: dict[str, bytes]) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("PIL/__init__.py", b"")
        for name, data in files.items():
            archive.writestr(name, data)
    name = f"pillow-{PILLOW_VERSION}-cp313-cp313-manylinux_2_28_aarch64.whl"
    return name, buffer.getvalue()


def test_local_builds_are_byte_identical_sorted_and_timeless() -> None:
    first, second = build_function_zip("local"), build_function_zip("local")

    assert first == second
    with zipfile.ZipFile(io.BytesIO(first.zip_bytes)) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    modes = {info.filename: info.external_attr >> 16 for info in infos}
    assert modes["lambdas/"] == 0o040755
    assert modes["lambdas/save_delete.py"] == 0o100644
    assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in infos if not info.is_dir())


def test_local_build_is_the_lambdas_package_and_nothing_else() -> None:
    names = set(entries(build_function_zip("local")))

    assert {"lambdas/__init__.py", "lambdas/save_delete.py", "lambdas/retrieve.py"} <= names
    assert all(name.startswith("lambdas/") for name in names)
    assert all(name.endswith((".py", "/")) for name in names)
    assert not any("__pycache__" in name or "test" in name for name in names)
    for handler in (SAVE_HANDLER, RETRIEVE_HANDLER):
        module = handler.rsplit(".", 1)[0]
        assert module.replace(".", "/") + ".py" in names


def test_code_sha256_is_lambdas_codesha256_format() -> None:
    bundle = build_function_zip("local")

    expected = base64.b64encode(hashlib.sha256(bundle.zip_bytes).digest()).decode()
    assert code_sha256(bundle.zip_bytes) == expected == bundle.sha256


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_aws_build_vendors_pillow_compiled_for_the_function(
    aws_builds: dict[str, AwsBuild], arch: str
) -> None:
    build = aws_builds[arch]
    files = entries(build.bundle)
    triplet = TRIPLETS[arch]

    assert "lambdas/save_delete.py" in files
    assert "PIL/__init__.py" in files
    assert f"PIL/_imaging.cpython-313-{triplet}.so" in files
    assert f"pillow-{PILLOW_VERSION}.dist-info/METADATA" in files
    native = {name: data for name, data in files.items() if data.startswith(b"\x7fELF")}
    assert any(name.startswith("pillow.libs/") for name in native)
    assert {name for name in files if ".so" in name.rsplit("/", 1)[-1]} == set(native)
    for name, data in native.items():
        assert int.from_bytes(data[18:20], "little") == ELF_MACHINES[arch], name
        assert data[4] == 2, name  # 64-bit
    extension_modules = [name for name in native if name.endswith(".so")]
    assert extension_modules
    assert all(f"cpython-313-{triplet}" in name for name in extension_modules)
    # None of the host's own extension modules slipped in. (On an x86-64 host the libraries
    # in pillow.libs/ are legitimately the same files: they don't depend on Python.)
    host_modules = {
        hashlib.sha256(path.read_bytes()).digest()
        for path in (Path(PIL.__file__).parent).glob("*.so")
    }
    assert host_modules
    shipped = {hashlib.sha256(native[name]).digest() for name in extension_modules}
    assert not host_modules & shipped
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[arch]
    assert build.bundle.description == (
        f"lambdas + Pillow {PILLOW_VERSION} manylinux {machine} cp313"
    )


def test_aws_build_asks_pip_for_the_runtimes_manylinux_wheel(
    aws_builds: dict[str, AwsBuild],
) -> None:
    (call,) = aws_builds["arm64"].pip_calls
    assert call[0] == "download"
    assert "--only-binary=:all:" in call
    assert "--no-deps" in call
    platforms = [call[i + 1] for i, arg in enumerate(call) if arg == "--platform"]
    assert platforms[0] == "manylinux_2_34_aarch64"  # Amazon Linux 2023's glibc
    assert {"manylinux_2_28_aarch64", "manylinux2014_aarch64"} <= set(platforms)
    assert all(platform.endswith("_aarch64") for platform in platforms)
    assert call[call.index("--python-version") + 1] == LAMBDA_RUNTIME.removeprefix("python")
    assert call[call.index("--implementation") + 1] == "cp"
    assert call[call.index("--abi") + 1] == "cp313"
    assert call[-1] == f"pillow=={PILLOW_VERSION}"


def test_a_warm_cache_builds_the_same_zip_without_pip(
    aws_builds: dict[str, AwsBuild], wheel_cache: Path
) -> None:
    pip = RecordingPip()

    again = build_function_zip("aws", "arm64", cache_dir=wheel_cache, pip=pip)

    assert pip.calls == []
    assert again == aws_builds["arm64"].bundle


def test_aws_and_local_bundles_differ(aws_builds: dict[str, AwsBuild]) -> None:
    digests = {build.bundle.sha256 for build in aws_builds.values()}
    digests.add(build_function_zip("local").sha256)
    assert len(digests) == 3


def test_refuses_an_x86_64_binary_in_an_arm64_bundle(tmp_path: Path) -> None:
    wheel = fake_wheel({"pillow.libs/libjpeg-1234.so.62": elf_header(62)})

    with pytest.raises(PackagingError) as refused:
        build_function_zip("aws", "arm64", cache_dir=tmp_path, pip=RecordingPip(wheel))

    message = str(refused.value)
    assert "pillow.libs/libjpeg-1234.so.62" in message
    assert "x86-64" in message
    assert "arm64" in message
    assert refused.value.hint is not None
    assert str(tmp_path) in refused.value.hint  # where the wheel is


def test_refuses_an_unnamed_elf_file_for_another_machine(tmp_path: Path) -> None:
    wheel = fake_wheel({"PIL/helper": elf_header(62)})

    with pytest.raises(PackagingError, match=r"PIL/helper is a binary for x86-64"):
        build_function_zip("aws", "arm64", cache_dir=tmp_path, pip=RecordingPip(wheel))


def test_refuses_an_extension_module_for_another_python(tmp_path: Path) -> None:
    name = "PIL/_imaging.cpython-311-aarch64-linux-gnu.so"
    wheel = fake_wheel({name: elf_header(183)})

    with pytest.raises(PackagingError) as refused:
        build_function_zip("aws", "arm64", cache_dir=tmp_path, pip=RecordingPip(wheel))

    assert name in str(refused.value)
    assert "cpython-311" in str(refused.value)
    assert LAMBDA_RUNTIME in str(refused.value)


def test_refuses_a_shared_library_that_is_not_elf(tmp_path: Path) -> None:
    macho = bytes.fromhex("cffaedfe") + bytes(60)
    wheel = fake_wheel({"PIL/_imaging.cpython-313-darwin.so": macho})

    with pytest.raises(PackagingError, match=r"not a Linux \(ELF\) binary"):
        build_function_zip("aws", "arm64", cache_dir=tmp_path, pip=RecordingPip(wheel))


def test_a_right_platform_fake_wheel_passes_and_is_cached(tmp_path: Path) -> None:
    name = "PIL/_imaging.cpython-313-aarch64-linux-gnu.so"
    wheel_name, wheel_data = fake_wheel({name: elf_header(183)})
    pip = RecordingPip((wheel_name, wheel_data))

    bundle = build_function_zip("aws", "arm64", cache_dir=tmp_path, pip=pip)

    files = entries(bundle)
    assert files[name] == elf_header(183)
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        assert archive.getinfo(name).external_attr >> 16 == 0o100755
    assert len(pip.calls) == 1
    assert [path.name for path in tmp_path.rglob("*.whl")] == [wheel_name]
    assert build_function_zip("aws", "arm64", cache_dir=tmp_path, pip=pip) == bundle
    assert len(pip.calls) == 1


def test_a_failed_download_says_what_pip_said_and_what_to_do(tmp_path: Path) -> None:
    pip = RecordingPip(
        returncode=1,
        stderr="ERROR: Could not find a version that satisfies the requirement\n"
        f"ERROR: No matching distribution found for pillow=={PILLOW_VERSION}\n",
    )

    with pytest.raises(PackagingError) as failed:
        build_function_zip("aws", "x86_64", cache_dir=tmp_path, pip=pip)

    assert f"No matching distribution found for pillow=={PILLOW_VERSION}" in str(failed.value)
    assert "Could not find a version" in str(failed.value)
    assert failed.value.hint is not None
    assert "network" in failed.value.hint
    assert not list(tmp_path.rglob("*.whl"))


def test_rejects_a_runtime_that_is_not_python(tmp_path: Path) -> None:
    pip = RecordingPip(returncode=1)

    with pytest.raises(PackagingError, match=r"unsupported Lambda runtime 'nodejs22\.x'"):
        build_function_zip("aws", runtime="nodejs22.x", cache_dir=tmp_path, pip=pip)

    assert pip.calls == []
