"""Who a request to the local cloud comes from: the owner, or a role's temporary session.

The gate verifies each request's SigV4 signature with the secret of the access key it
names, and puts the resulting ``Principal`` into the WSGI environ under ``ENVIRON_KEY``
for the layers inside it (the authoriser checks a role session's calls against the role's
policies). The owner's key is the local cloud's own (``secret``); role sessions are
temporary credentials issued to the functions' workers or by STS ``AssumeRole``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

#: Where the gate leaves the verified ``Principal`` in the WSGI environ.
ENVIRON_KEY: Final = "imgcli.principal"


@dataclass(frozen=True)
class Principal:
    """A key pair the local cloud accepts, and what it stands for."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    #: ``None`` for the owner's own key; role sessions must send theirs.
    session_token: str | None = field(default=None, repr=False)
    #: ``None``: the owner, who may do anything (the account's root).
    role_arn: str | None = None
    #: Epoch seconds after which the credentials are refused; ``None``: never.
    expires_at: float | None = None


class Identities(Protocol):
    """Finds the principal an access key id belongs to, or ``None``."""

    def lookup(self, access_key_id: str) -> Principal | None: ...
