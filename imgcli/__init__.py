"""imgcli: a command-line image gallery on a serverless AWS stack.

The package holds the CLI (``imgcli.cli``) and the pieces it calls: output, configuration,
errors and the one place that makes boto3 clients. The stack's Lambda code lives in the
sibling package ``lambdas`` and the deployment code in ``infra``; the wheel ships all three.
"""

__version__ = "0.1.0"
