"""A Globus confidential client's client-credentials grant: bearer tokens for IRI (NERSC,
ALCF) renewed before they expire, written where the IRI client reads its token.

globus_sdk makes the request; its errors become ours here, with our own words only (a
library message may quote the request).  The client secret is a ``Secret`` reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Secret
from ..errors import EdgeAuthError, EdgeNetworkError
from . import redaction


@dataclass(frozen=True)
class GlobusClient:
    client_id: str
    secret: Secret
    scope: str
    #: Globus Auth's base URL (default: globus_sdk's, honouring GLOBUS_SDK_SERVICE_URL_AUTH)
    auth_url: str = ""


def grant(client: GlobusClient) -> tuple[str, float]:
    """A new access token for ``client.scope`` and its expiry (epoch seconds)."""
    import globus_sdk

    secret = client.secret.reveal()
    redaction.register(secret)
    auth = globus_sdk.ConfidentialAppAuthClient(
        client.client_id, secret, base_url=client.auth_url or None
    )
    try:
        answer = auth.oauth2_client_credentials_tokens(requested_scopes=client.scope)
    except globus_sdk.GlobusAPIError as exc:
        status = exc.http_status
        if status == 429 or status >= 500:
            raise EdgeNetworkError(
                f"Globus Auth could not answer the grant (HTTP {status})", maybe_sent=False
            ) from None
        raise EdgeAuthError(
            f"Globus Auth refused client {client.client_id} (HTTP {status}, {exc.code})",
            status=status,
        ) from None
    except globus_sdk.NetworkError as exc:
        raise EdgeNetworkError(
            f"Globus Auth unreachable ({type(exc).__name__})", maybe_sent=False
        ) from None
    tokens = list(answer.by_resource_server.values())
    wanted = [t for t in tokens if client.scope in str(t.get("scope", "")).split()]
    chosen = (wanted or tokens)[:1]
    if not chosen or not chosen[0].get("access_token"):
        raise EdgeAuthError(f"Globus Auth answered no token for scope {client.scope}")
    token = str(chosen[0]["access_token"])
    redaction.register(token)
    return token, float(chosen[0].get("expires_at_seconds") or 0)
