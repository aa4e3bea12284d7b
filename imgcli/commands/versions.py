"""``imgcli versions`` and ``imgcli restore``: an image's versions, and bringing one back.

Both read the gallery bucket directly (S3 is the source of truth for versions; the index
keeps only the current one); what is decided is in ``imgcli.versions``. ``versions
--json`` is NDJSON, one version per line, as ``list --json``; ``restore --json`` one
object. A key with no versions at all is exit code 1, as ``show`` of a missing key.
"""

from __future__ import annotations

from typing import Annotated, Final

import typer

from imgcli.commands.frame import DryRunFlag, JsonFlag, command_invocation, reports_failures
from imgcli.errors import RemoteError, UsageError
from imgcli.invocation import Invocation
from imgcli.keys import checked_existing_key
from imgcli.output import human_size

VERSION_COLUMNS: Final = ("version_id", "last_modified", "size", "etag", "current", "kind")
KeyArgument = Annotated[str, typer.Argument(metavar="KEY", help="The image's key.")]


@reports_failures
def list_key_versions(ctx: typer.Context, key: KeyArgument, json_output: JsonFlag = False) -> None:
    """List a key's versions in the gallery bucket, newest first, delete markers included.

    Each shows its version id, when it was written, size, ETag, whether it is the current
    one and whether it is a delete marker. --json prints one object per line. Exit code 1
    when the bucket holds no version of the key.

    Example: imgcli versions "holiday/beach 1.jpg"
    """
    from imgcli.versions import NoVersions, list_versions

    _checked(key)
    run = command_invocation(ctx, json_output)
    bucket = run.settings.record("bucket")
    versions = list_versions(run.aws().client("s3"), bucket, key)
    if not versions:
        raise NoVersions(
            f"no version of '{key}' in bucket {bucket}", hint="'imgcli list' shows the keys"
        )
    if run.output.json_mode:
        run.output.records((v.as_json() for v in versions), columns=())
        return
    rows = [
        {
            "version_id": v.version_id,
            "last_modified": v.last_modified.isoformat(timespec="seconds"),
            "size": None if v.size is None else human_size(v.size),
            "etag": v.etag,
            "current": "yes" if v.is_latest else "",
            "kind": "delete marker" if v.delete_marker else "image",
        }
        for v in versions
    ]
    run.output.records(rows, columns=VERSION_COLUMNS, title=key)


@reports_failures
def restore_image(
    ctx: typer.Context,
    key: KeyArgument,
    version_id: Annotated[
        str | None,
        typer.Option(
            "--version-id",
            help="The version to bring back (see 'imgcli versions KEY'); needed when the "
            "key exists.",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Return only when the API lists the restored version.")
    ] = False,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", min=0, help="Seconds --wait waits at most.")
    ] = 60.0,
    dry_run: DryRunFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Bring back a deleted or overwritten image from the versions the stack keeps.

    The chosen version is copied over the key as its new current version, so the history
    stays whole and the stack indexes it like an upload. Without --version-id a deleted
    key gets its newest image version back; a key that exists needs --version-id (exit
    code 2 otherwise). Prints the key, the version restored from and the new version id.

    Example: imgcli restore "holiday/beach 1.jpg" --wait
    """
    from imgcli.versions import list_versions, restore_source, restore_version

    _checked(key)
    if version_id is not None and not version_id:
        raise UsageError("--version-id must not be empty")
    run = command_invocation(ctx, json_output)
    bucket = run.settings.record("bucket")
    s3 = run.aws().client("s3")
    source = restore_source(list_versions(s3, bucket, key), key, version_id)
    if dry_run:
        planned = {"key": key, "restored_from": source.version_id, "dry_run": True}
        rows = list(planned.items())
        run.output.document(planned, columns=("field", "value"), rows=rows, title=key)
        return
    restored = restore_version(s3, bucket, source)
    result = restored.as_json()
    run.output.document(
        result, columns=("field", "value"), rows=list(result.items()), title="restored"
    )
    if wait and restored.version_id:
        _wait_for_index(run, key, restored.version_id, wait_timeout)


def register(app: typer.Typer) -> None:
    """Add ``versions`` and ``restore`` to the imgcli app."""
    app.command("versions")(list_key_versions)
    app.command("restore")(restore_image)


def _checked(key: str) -> None:
    if not key:
        raise UsageError("the image key must not be empty")
    checked_existing_key(key, "the image key")


def _wait_for_index(run: Invocation, key: str, version_id: str, timeout_s: float) -> None:
    from imgcli.gallery_api import gallery_api_for
    from imgcli.versions import RestoredButInvalid, wait_until_version_indexed

    run.output.info("waiting until the API lists the restored version")
    image = wait_until_version_indexed(gallery_api_for(run), key, version_id, timeout_s=timeout_s)
    if image is None:
        raise RemoteError(
            f"the API does not list version '{version_id}' of '{key}' after {timeout_s:g} s",
            hint="the stack's save/delete function may be failing or slow: look at its "
            "failed-events queue, or raise --wait-timeout",
        )
    if image.get("status") == "invalid":
        raise RestoredButInvalid(
            f"'{key}' was restored, but the stack could not read it as an image: "
            f"{image.get('reason') or 'no reason recorded'}"
        )
