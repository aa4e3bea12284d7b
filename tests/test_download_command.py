"""``imgcli download``'s command line and words, without AWS; and its local side (folders,
links, temporary files) on a real disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imgcli.cli import build_app
from imgcli.commands.download import failure_line, summary_line
from imgcli.download_files import LocalConflict, NameTaken, PartFiles, parent_folder, place
from imgcli.download_types import DownloadConfig, DownloadResult, DownloadSummary
from imgcli.errors import ExitCode


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(build_app(), list(args), env=env)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "nothing to download"),
        (("a.jpg", "--prefix", "p/"), "not both"),
        (("a.jpg", "b.jpg", "--version-id", "v1"), "exactly one KEY"),
        (("--prefix", "p/", "--version-id", "v1"), "exactly one KEY"),
        (("folder/",), "a folder, not an object"),
        (("--prefix", "bad\x1bprefix"), "holds control characters"),
        (("x" * 1025,), "1025 bytes"),
    ],
)
def test_usage_errors_come_before_any_aws_work(args: tuple[str, ...], said: str) -> None:
    result = invoke("download", *args, env={"IMGCLI_STACK": "never-bootstrapped"})
    assert result.exit_code == ExitCode.USAGE, result.output
    assert said in result.stderr


def test_to_must_be_a_folder(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = invoke("download", "a.jpg", "--to", str(a_file))
    assert result.exit_code == ExitCode.USAGE
    assert "is not a folder" in result.stderr


def test_a_stack_never_bootstrapped_exits_3(tmp_path: Path) -> None:
    env = {
        "IMGCLI_STACK": "nowhere",
        "IMGCLI_CONFIG": str(tmp_path / "config.toml"),
        "IMGCLI_DATA_DIR": str(tmp_path / "data"),
    }
    result = invoke("download", "a.jpg", "--to", str(tmp_path / "out"), env=env)
    assert result.exit_code == ExitCode.NO_STACK, result.output
    assert not (tmp_path / "out").exists()


def test_help_has_an_example() -> None:
    result = invoke("download", "--help")
    assert result.exit_code == 0
    assert "Example: imgcli download" in result.stdout


def test_the_summary_says_what_happened() -> None:
    done = DownloadSummary(downloaded=3, skipped=2, refused=1, bytes_received=3072, seconds=1.5)
    assert summary_line(done) == (
        "downloaded 3 files (3.0 KiB) in 1.5 s (2 files/s, 2.0 KiB/s); "
        "2 skipped (same content), 1 refused"
    )
    assert summary_line(DownloadSummary(skipped=4)) == (
        "nothing to download: 4 skipped (same content)"
    )
    assert summary_line(DownloadSummary()) == "nothing to download: no objects found"
    assert summary_line(DownloadSummary(dry_run=True, would_download=2, refused=1)) == (
        "dry run: would download 2 files; 1 refused; nothing written"
    )
    assert summary_line(DownloadSummary(downloaded=1, failed=1, interrupted=True)) == (
        "interrupted: 1 file (0 B) downloaded before Ctrl-C; 1 failed; no partial file was left"
    )


def test_error_lines_always_lead_with_the_key_and_add_the_path_only_to_a_local_refusal() -> None:
    missing = DownloadResult("nope.jpg", "/tmp/dl/nope.jpg", "failed", "no such key in the bucket")
    assert failure_line(missing) == "nope.jpg: failed: no such key in the bucket"
    unsafe = DownloadResult("trav/../x.jpg", None, "refused", "the key has a '..' segment")
    assert failure_line(unsafe) == "trav/../x.jpg: refused: the key has a '..' segment"
    taken = DownloadResult(
        "a/b.jpg", "/tmp/dl/a/b.jpg", "refused", "exists; --overwrite to replace"
    )
    assert failure_line(taken) == (
        "a/b.jpg: refused: exists; --overwrite to replace (at /tmp/dl/a/b.jpg)"
    )


def test_a_folder_key_hints_at_a_prefix_quoted_for_the_shell() -> None:
    result = invoke("download", "it's a folder/", env={"IMGCLI_STACK": "never-bootstrapped"})
    assert result.exit_code == ExitCode.USAGE
    assert """--prefix 'it'"'"'s a folder/'""" in result.stderr


def test_the_client_pool_fits_the_jobs() -> None:
    assert DownloadConfig(jobs=32).pool_connections == 33
    with pytest.raises(ValueError, match="jobs"):
        DownloadConfig(jobs=0)


# The local side


def test_folders_are_made_level_by_level(tmp_path: Path) -> None:
    root = os.path.realpath(tmp_path)
    folder = parent_folder(root, ("a", "b", "c.jpg"), create=True)
    assert Path(folder) == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    # Without create, nothing is made.
    assert parent_folder(root, ("x", "y", "z.jpg"), create=False) == str(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_symbolic_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    elsewhere = tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "out").symlink_to(elsewhere)
    (root / "real").mkdir()
    (root / "in").symlink_to(root / "real")
    real_root = os.path.realpath(root)

    with pytest.raises(LocalConflict, match="symbolic link out of the target folder"):
        parent_folder(real_root, ("out", "a.jpg"), create=True)
    with pytest.raises(LocalConflict, match="symbolic link out of the target folder"):
        parent_folder(real_root, ("out", "deeper", "a.jpg"), create=True)
    assert list(elsewhere.iterdir()) == []
    # A link that stays inside the folder is followed.
    assert parent_folder(real_root, ("in", "b.jpg"), create=True) == str(root / "in")


def test_a_file_where_a_folder_is_needed_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a file")
    with pytest.raises(LocalConflict, match="a file is where folder 'a' is needed"):
        parent_folder(os.path.realpath(tmp_path), ("a", "b.jpg"), create=True)


def test_temporary_files_are_hidden_private_and_all_removed(tmp_path: Path) -> None:
    folder = tmp_path / "target"
    folder.mkdir()
    parts = PartFiles()
    descriptors = [parts.create(str(folder), name) for name in ("a.jpg", "é" * 200)]
    for descriptor, path in descriptors:
        os.close(descriptor)
        name = Path(path).name
        assert name.startswith(".") and name.endswith(".part")
        assert len(name.encode()) <= 255
        assert Path(path).stat().st_mode & 0o777 == 0o600
    assert len(parts) == 2
    parts.remove_all()
    assert list(folder.iterdir()) == []
    assert len(parts) == 0


def test_placing_never_clobbers_a_file_that_appeared_unless_overwriting(tmp_path: Path) -> None:
    part, final = tmp_path / ".a.part", tmp_path / "a.jpg"
    part.write_bytes(b"new")
    final.write_bytes(b"someone else's")
    with pytest.raises(NameTaken):
        place(str(part), str(final), overwrite=False)
    assert final.read_bytes() == b"someone else's"
    place(str(part), str(final), overwrite=True)
    assert final.read_bytes() == b"new"
    assert not part.exists()


def test_overwriting_replaces_a_link_not_the_file_it_points_to(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    link = tmp_path / "a.jpg"
    link.symlink_to(target)
    part = tmp_path / ".a.part"
    part.write_bytes(b"downloaded")
    place(str(part), str(link), overwrite=True)
    assert target.read_bytes() == b"keep me"
    assert not link.is_symlink()
    assert link.read_bytes() == b"downloaded"
