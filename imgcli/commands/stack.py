"""``imgcli config``, ``bootstrap``, ``destroy`` and ``stack``: the selected stack itself.

``config`` shows the settings the stack resolves to; ``bootstrap`` and ``destroy`` call the
stack layer (``imgcli.infra.deploy``), showing its plan on stderr and each step as it runs;
``stack`` prints bootstrap's record. ``imgcli.infra`` is imported inside the commands, so
``imgcli --help`` does not pay for it.

A bootstrap or destroy of a stack that another one is changing waits for it, saying so on
stderr (the stack's lock, ``imgcli.infra.lock``), as apt and dpkg wait for theirs: the
second run then plans from what the first left. ``--no-wait`` refuses instead (exit 2),
for scripts that would rather fail than queue.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imgcli.commands.frame import (
    DryRunFlag,
    JsonFlag,
    YesFlag,
    command_invocation,
    reports_failures,
)
from imgcli.invocation import Invocation

if TYPE_CHECKING:
    from imgcli.infra.deploy import StackDescription
    from imgcli.infra.lock import LockHolder
    from imgcli.infra.plan import Plan, Step

NoWaitFlag = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="If another bootstrap or destroy of the stack is running, fail (exit 2) "
        "instead of waiting for it.",
    ),
]


@reports_failures
def show_config(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Show the selected stack's settings and where each comes from. No AWS calls.

    Example: imgcli --stack prod config --json
    """
    run = command_invocation(ctx, json_output)
    settings = run.settings
    if settings.known_stacks and not settings.in_config_file:
        run.output.warning(
            f"stack '{settings.name}' is not in {settings.config_file} (it defines "
            f"{', '.join(settings.known_stacks)}); showing defaults"
        )
    rows = settings.describe()
    if settings.target == "aws" and settings.region is None:
        # What botocore will use, so "imgcli config shows the region in use" is true.
        from imgcli.aws import region_in_use

        region, source = region_in_use(settings, run.environ)
        rows = [("region", region, source) if row[0] == "region" else row for row in rows]
    run.output.document(
        {name: {"value": value, "source": source} for name, value, source in rows},
        columns=("setting", "value", "source"),
        rows=rows,
        title=f"stack {settings.name}",
    )


class TargetChoice(enum.StrEnum):
    local = "local"
    aws = "aws"


class ArchitectureChoice(enum.StrEnum):
    arm64 = "arm64"
    x86_64 = "x86_64"


@reports_failures
def bootstrap_stack(
    ctx: typer.Context,
    target: Annotated[
        TargetChoice | None,
        typer.Option(help="Where the stack lives; fixed by the first bootstrap. Default: local."),
    ] = None,
    arch: Annotated[
        ArchitectureChoice | None,
        typer.Option(help="CPU architecture of the functions. Default: arm64, then as before."),
    ] = None,
    noncurrent_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Days a deleted or overwritten image stays recoverable as an old version. "
            "Default: 30, then as before.",
        ),
    ] = None,
    url_expiry: Annotated[
        int | None,
        typer.Option(
            min=60,
            max=12 * 3600,
            metavar="SECONDS",
            help="How long the image and thumbnail links the API hands out stay valid, "
            "60 to 43200 (a link signed with the function's credentials dies with them "
            "anyway). Default: 900, then as before.",
        ),
    ] = None,
    dry_run: DryRunFlag = False,
    json_output: JsonFlag = False,
    no_wait: NoWaitFlag = False,
) -> None:
    """Create the stack, or bring it up to date: buckets, table, roles, functions, API.

    Safe to run again: it plans from what exists, changes only what differs, and resumes
    a bootstrap that failed half way. If another bootstrap or destroy of the stack is
    running, it waits for that one (or fails, with --no-wait).

    Example: imgcli --stack demo bootstrap --target aws --dry-run
    """
    from imgcli.infra import deploy

    run = command_invocation(ctx, json_output)
    if target is not None:
        run.override(target=target.value)
    changes: dict[str, Any] = {}
    if arch is not None:
        changes["architecture"] = arch.value
    if noncurrent_days is not None:
        changes["noncurrent_version_days"] = noncurrent_days
    if url_expiry is not None:
        changes["url_expiry_s"] = url_expiry
    outcome = deploy.bootstrap(
        run.stack_environment(),
        changes,
        dry_run=dry_run,
        on_plan=lambda plan: _show_plan(run, plan, "bootstrap"),
        on_step=lambda step, number, total: _show_step(run, step, number, total),
        wait=not no_wait,
        on_wait=lambda holder: _show_wait(run, holder),
    )
    if dry_run:
        if run.output.json_mode:  # people read the plan on stderr already
            _plan_document(run, outcome.plan)
    elif outcome.description is not None:
        _show_stack(run, outcome.description)


@reports_failures
def destroy_stack(
    ctx: typer.Context,
    target: Annotated[
        TargetChoice | None,
        typer.Option(help="Where the stack lives, if its bootstrap record is lost."),
    ] = None,
    yes: YesFlag = False,
    delete_images: Annotated[
        bool,
        typer.Option(help="Also delete every image, with all its versions, and the bucket."),
    ] = False,
    dry_run: DryRunFlag = False,
    json_output: JsonFlag = False,
    no_wait: NoWaitFlag = False,
) -> None:
    """Remove the stack: everything bootstrap created. Safe to run again.

    A bucket that still holds images is kept (and nothing is removed) unless
    --delete-images is given. The thumbnails bucket is emptied without asking: thumbnails
    are made from the images. Waits for another bootstrap or destroy of the stack that is
    running (or fails, with --no-wait).

    Example: imgcli --stack demo destroy --yes --delete-images
    """
    from imgcli.infra import deploy

    run = command_invocation(ctx, json_output)
    if target is not None:
        run.override(target=target.value)
    environment = run.stack_environment()
    name = run.settings.name

    def confirm(plan: Plan) -> bool:
        return run.output.confirm(
            f"Delete {len(plan.steps)} resources of stack '{name}'"
            + (" and every image in it" if delete_images else "")
            + "?",
            yes=yes,
        )

    outcome = deploy.destroy(
        environment,
        delete_images=delete_images,
        dry_run=dry_run,
        confirm=confirm,
        on_plan=lambda plan: _show_plan(run, plan, "destroy"),
        on_step=lambda step, number, total: _show_step(run, step, number, total),
        wait=not no_wait,
        on_wait=lambda holder: _show_wait(run, holder),
    )
    for note in outcome.notes:
        run.output.warning(note)
    if outcome.plan.up_to_date:
        run.output.info(f"stack '{name}': nothing to destroy")
    elif not dry_run and not outcome.executed:
        run.output.info("nothing was changed")
    if run.output.json_mode:
        run.output.document(
            {
                "stack": name,
                "destroyed": outcome.executed,
                "dry_run": dry_run,
                "steps": [step.description for step in outcome.plan.steps],
            },
            columns=(),
            rows=(),
        )


@reports_failures
def show_stack(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Describe the selected stack as bootstrap recorded it: bucket, table, API URL. No AWS calls.

    Example: imgcli --stack demo stack --json
    """
    from imgcli.infra import deploy

    run = command_invocation(ctx, json_output)
    _show_stack(run, deploy.describe(run.settings.name))


def _show_plan(run: Invocation, plan: Plan, verb: str) -> None:
    name = run.settings.name
    if plan.up_to_date:
        if verb == "bootstrap":
            run.output.info(f"stack '{name}' is up to date")
        return
    run.output.info(f"{verb} plan for stack '{name}' ({len(plan.steps)} steps):")
    marks = {"create": "+", "update": "~", "delete": "-"}
    for step in plan.steps:
        run.output.info(f"  {marks[step.action]} {step.description}")


def _plan_document(run: Invocation, plan: Plan) -> None:
    """A dry run's result for scripts: the plan as JSON."""
    steps = [{"action": step.action, "description": step.description} for step in plan.steps]
    run.output.document(
        {"stack": run.settings.name, "up_to_date": plan.up_to_date, "steps": steps},
        columns=("action", "step"),
        rows=[(step.action, step.description) for step in plan.steps],
        title=f"plan for stack {run.settings.name}",
    )


def _show_wait(run: Invocation, holder: LockHolder) -> None:
    run.output.info(f"waiting for {holder.describe()}...")


def _show_step(run: Invocation, step: Step, number: int, total: int) -> None:
    run.output.info(f"[{number}/{total}] {step.description}")


def _show_stack(run: Invocation, description: StackDescription) -> None:
    data: dict[str, Any] = description.as_json()
    rows = [
        (key, ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value)
        for key, value in data.items()
    ]
    run.output.document(
        data, columns=("field", "value"), rows=rows, title=f"stack {description.stack}"
    )


def register(app: typer.Typer) -> None:
    app.command("config")(show_config)
    app.command("bootstrap")(bootstrap_stack)
    app.command("destroy")(destroy_stack)
    app.command("stack")(show_stack)
