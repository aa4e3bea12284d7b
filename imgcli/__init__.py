"""imgcli: a command-line image gallery on a serverless AWS stack.

The package holds the CLI (``imgcli.cli``, its commands in ``imgcli.commands``) and the
services they call: output, configuration, errors, the one place that makes AWS clients,
the upload engine, the API client and the local cloud. The stack's Lambda code
(``imgcli.lambdas``) and the deployment code (``imgcli.infra``) are subpackages whose
sources sit at the top of the repository (``lambdas/``, ``infra/``), so the installed wheel
owns only the name ``imgcli``: a generic top-level ``lambdas`` collided with the PyPI
package of that name.

Layers point one way (``tests/test_layers.py`` checks every import):

1. ``imgcli.lambdas`` depends on nothing of ours (it runs alone in the Lambda zip);
2. ``imgcli.infra`` may import ``imgcli.lambdas`` and nothing else of imgcli;
3. the services (every other module here, ``imgcli.localcloud`` included) may import both;
4. ``imgcli.commands`` (one module per command group) may import the services;
5. ``imgcli.cli`` (the app) may import the commands.

Nothing imports upward, and no two modules import each other.
"""

__version__ = "0.1.0"
