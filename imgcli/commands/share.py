"""``imgcli url``: a presigned link to an image or its thumbnail (``imgcli.share_links``).

stdout is the URL and nothing else, so ``curl "$(imgcli url k)"`` works; ``--json`` gives
one object (url, expires_at, key: the object linked, image_key: the image's, bucket,
version_id). The warning about temporary credentials goes to stderr. An object not stored
as an image type is linked as a download (``imgcli.share_links``: served as).
"""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from imgcli.commands.frame import JsonFlag, command_invocation, reports_failures
from imgcli.errors import UsageError
from imgcli.invocation import Invocation
from imgcli.keys import checked_existing_key


class ThumbnailBox(enum.StrEnum):
    small = "256"
    large = "1024"


@reports_failures
def share_url(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The image's key.")],
    expires: Annotated[
        str,
        typer.Option(
            "--expires",
            "-e",
            help="How long the link works: 90s, 15m, 1h, 7d or seconds; 1 s to 7 days.",
        ),
    ] = "1h",
    thumbnail: Annotated[
        ThumbnailBox | None,
        typer.Option("--thumbnail", help="Link to the image's thumbnail of this size instead."),
    ] = None,
    version_id: Annotated[
        str | None,
        typer.Option("--version-id", help="Link to this version of the image."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Print a presigned link anyone can open (GET) until it expires.

    It is signed here with your credentials; nothing is shared with the stack. Exit code 1
    when the key (or version) is not in the bucket, or the image has no thumbnail of the
    size asked for. Links signed with temporary credentials stop working when the session
    ends, whatever --expires says (a warning says so). An object not stored as an image
    type imgcli accepts opens as a download (application/octet-stream), never as a page.

    Example: curl -o beach.webp "$(imgcli url 'holiday/beach 1.jpg' --thumbnail 1024)"
    """
    from imgcli.share_links import (
        check_object,
        parse_expiry,
        presign_get,
        presigning_client,
        temporary_credentials,
    )

    if not key:
        raise UsageError("the image key must not be empty")
    checked_existing_key(key, "the image key")
    expires_s = parse_expiry(expires)
    if thumbnail is not None and version_id is not None:
        raise UsageError(
            "--thumbnail and --version-id cannot go together: thumbnails are of the current version"
        )
    run = command_invocation(ctx, json_output)
    if thumbnail is not None:
        link_bucket, link_key = _thumbnail_target(run, key, int(thumbnail.value))
    else:
        link_bucket, link_key = run.settings.record("bucket"), key
    aws = run.aws()
    s3 = aws.client("s3")
    stored_content_type = check_object(s3, link_bucket, link_key, version_id)
    if temporary_credentials(aws.session.get_credentials()):
        run.output.warning(
            "these credentials are temporary (a session token): the link stops working "
            "when the session ends, whatever --expires says"
        )
    link = presign_get(
        presigning_client(aws),
        link_bucket,
        link_key,
        expires_s,
        stored_content_type=stored_content_type,
        image_key=key,
        version_id=version_id,
    )
    if run.output.json_mode:
        run.output.document(link.as_json(), columns=(), rows=())
    elif not run.output.quiet:
        # The URL alone, unescaped and unwrapped: it is ASCII, and scripts read it.
        stream = run.output.streams.stdout
        stream.write(link.url + "\n")
        stream.flush()


def _thumbnail_target(run: Invocation, key: str, box: int) -> tuple[str, str]:
    """The thumbnails bucket and the key of ``key``'s ``box`` px thumbnail, from its record."""
    from imgcli.commands.gallery import ImageNotFound
    from imgcli.gallery_api import gallery_api_for
    from imgcli.share_links import thumbnail_key, thumbnails_bucket_for

    image = gallery_api_for(run).get_image(key)
    if image is None:
        raise ImageNotFound(
            f"no image with key '{key}' in stack '{run.settings.name}'",
            hint="'imgcli list' shows the keys",
        )
    return thumbnails_bucket_for(run), thumbnail_key(image, box)


def register(app: typer.Typer) -> None:
    """Add ``url`` to the imgcli app."""
    app.command("url")(share_url)
