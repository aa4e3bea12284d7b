"""The stack imgcli deploys: names, plan, AWS operations, executor, packaging, IAM policies.

Empty until `imgcli bootstrap` lands (issue 3); shipped in the wheel now so the package
layout the design promises holds from the first release.
"""
