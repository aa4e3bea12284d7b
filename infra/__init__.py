"""The stack imgcli deploys, and how: build, plan, execute, record.

``imgcli bootstrap`` runs one pipeline (``infra.deploy``), in the manner of AWS Chalice's
deployer but without its known faults:

1. **Who and where** (``deploy.StackEnvironment``): the account (STS) and region of the
   session, and from them every resource name (``names``): names are derived, never
   remembered, so a lost record cannot orphan a resource.
2. **Build** (``packaging``): a deterministic zip of ``lambdas/``; for AWS with Pillow
   vendored from manylinux wheels for the function's architecture and Python, with every
   native binary checked before anything is deployed. Its SHA-256 is compared with the
   deployed ``CodeSha256``, so unchanged code is never uploaded again.
3. **Desired state** (``resources``): every resource with its settings as plain data, in
   creation order; the IAM documents come from ``policies``.
4. **Plan** (``plan.plan_bootstrap``/``plan_destroy``): read-only calls through one
   handler per resource kind (``table_handlers``, ``bucket_handlers``, ``role_handlers``...,
   gathered by ``storage_handlers`` and ``compute_handlers``: the only code that knows
   AWS's quirks, behind the contract in ``handlers``, sharing the bounded waits, retries
   and tag rules of ``aws_support``), compared setting by setting.
   A plan is a tuple of steps; ``--dry-run`` prints it.
5. **Execute** (``plan.execute``): the steps in order, the stack's record (``state``)
   written after each one, so a failed bootstrap resumes where it stopped and a half-built
   stack can be destroyed.

Imported as ``imgcli.infra``, it depends on nothing of imgcli but the functions' code
(``imgcli.lambdas``): its errors are its own (``errors``, each naming the kind of problem,
which the CLI maps to an exit code) and the caller passes plain values in.
"""
