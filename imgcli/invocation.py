"""What one run of imgcli knows: how to talk to the user, and which stack to use.

The global options build one ``Invocation`` per run (``imgcli.cli``); commands take it from
the Typer context (``imgcli.commands.frame``) and hand it, or the clients it makes, to the
services. It lives apart from the CLI so that services (the API client, the upload engine)
can take it without knowing the command line, and it imports neither typer nor boto3:
the stack's settings are resolved, and its clients made, on first use, so ``imgcli
<command> --help`` works even with a broken config file and costs no AWS import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from imgcli.config import Flags, StackSettings, resolve_stack
from imgcli.output import Output

if TYPE_CHECKING:
    from imgcli.aws import AwsClients
    from imgcli.infra.deploy import StackEnvironment


class Invocation:
    """One run's output, flags and environment, and the stack they select."""

    def __init__(self, output: Output, flags: Flags, environ: Mapping[str, str]) -> None:
        self.output = output
        self.flags = flags
        self.environ = environ
        self._settings: StackSettings | None = None
        self._aws: AwsClients | None = None

    @property
    def settings(self) -> StackSettings:
        """The selected stack's settings (flags > IMGCLI_* > config file > defaults)."""
        if self._settings is None:
            self._settings = resolve_stack(self.flags, self.environ)
        return self._settings

    def aws(self) -> AwsClients:
        """boto3 clients for the selected stack; the first call imports botocore.

        A local stack's cloud is started first if it is not running (said on stderr), so a
        newcomer's first command just works.
        """
        if self._aws is None:
            from imgcli.aws import AwsClients

            self._ensure_local_cloud()
            self._aws = AwsClients(self.settings)
        return self._aws

    def _ensure_local_cloud(self) -> None:
        from imgcli.localcloud import process

        settings = self.settings
        if settings.target != "local" or settings.endpoint_url != process.endpoint_for(
            settings.local_port
        ):
            return  # an AWS stack, or a local endpoint someone else runs
        status, started = process.start(settings.local_port, self.environ)
        if started:
            self.output.info(f"started the local cloud on {status.endpoint}")

    def override(self, **flags: Any) -> None:
        """Let a command's own flags (``--target``, ``--port``) take part in resolving."""
        self.flags = dataclasses.replace(self.flags, **flags)
        self._settings = None
        self._aws = None

    def stack_environment(self) -> StackEnvironment:
        """Account, region and names of the selected stack (the first AWS calls)."""
        from imgcli.errors import UsageError
        from imgcli.infra.deploy import StackEnvironment
        from imgcli.localcloud import api_url

        aws = self.aws()
        region = aws.region
        if not region:
            raise UsageError("no AWS region for this stack", hint="pass --region or set AWS_REGION")
        settings = self.settings
        return StackEnvironment(
            settings.name,
            "aws" if settings.target == "aws" else "local",
            aws.client,
            region,
            local_api_url=api_url,
        )
