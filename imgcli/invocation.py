"""What one run of imgcli knows: how to talk to the user, and which stack to use.

The global options build one ``Invocation`` per run (``imgcli.cli``); commands take it from
the Typer context (``imgcli.commands.frame``) and hand it, or the clients it makes, to the
services. It lives apart from the CLI so that services (the API client, the upload engine)
can take it without knowing the command line, and it imports neither typer nor boto3:
the stack's settings are resolved, and its clients made, on first use, so ``imgcli
<command> --help`` works even with a broken config file and costs no AWS import.

It is also where the run's knowledge meets the local cloud's: a local stack whose port
nothing configures uses the port this data dir's local cloud was started on, a
configured port that disagrees with the running local cloud is refused before any
request (else every command would answer "start the local cloud", and ``local start``
"already running": a loop), and a failure's hint is told the stack and that port
(``describe_failure``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from imgcli.config import LOCAL_DEFAULT_PORT, Flags, StackSettings, resolve_stack
from imgcli.errors import Failure, FailureContext, ImgcliError, UsageError, describe_failure
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
        """The selected stack's settings (flags > IMGCLI_* > config file > record > defaults)."""
        if self._settings is None:
            self._settings = resolve_stack(
                self.flags, self.environ, local_cloud_port=self._started_local_port
            )
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
        if status.port != settings.local_port:
            # One data dir has one local cloud; it runs elsewhere than this stack says.
            raise UsageError(
                f"this data dir's local cloud runs on port {status.port}, but stack "
                f"'{settings.name}' is set to port {settings.local_port} "
                f"({settings.sources['local_port']})",
                hint=f"use port {status.port} there, or stop the local cloud ('imgcli local "
                f"stop') and start it with 'imgcli local start --port {settings.local_port}'",
            )
        if started:
            self.output.info(f"started the local cloud on {status.endpoint}")

    def override(self, **flags: Any) -> None:
        """Let a command's own flags (``--target``, ``--port``) take part in resolving."""
        self.flags = dataclasses.replace(self.flags, **flags)
        self._settings = None
        self._aws = None

    def describe_failure(self, exc: BaseException) -> Failure:
        """``imgcli.errors.describe_failure`` with what this run knows for its hints."""
        stack = self._settings.name if self._settings is not None else self.flags.stack
        context = FailureContext(stack=stack, running_local_port=self._running_local_port)
        return describe_failure(exc, context)

    def stack_environment(self) -> StackEnvironment:
        """Account, region and names of the selected stack (the first AWS calls)."""
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

    def _started_local_port(self) -> int | None:
        """The port this data dir's local cloud was started on, from its record; no request."""
        from imgcli.localcloud import process

        # access() answers the port it is given when there is no record.
        port = process.access(LOCAL_DEFAULT_PORT, self.environ).port
        return None if port == LOCAL_DEFAULT_PORT else port

    def _running_local_port(self) -> int | None:
        """The port this data dir's local cloud answers on now, or None; never raises."""
        from imgcli.localcloud import process

        try:
            status = process.status(LOCAL_DEFAULT_PORT, self.environ)
        except (ImgcliError, OSError):
            return None
        return status.port if status.running else None
