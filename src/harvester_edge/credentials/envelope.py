"""Harvester's side of end-to-end encrypted delivery: seal a credential for one site path.

The envelope is opened only by ``site_receiver`` with the site's copy of the key (see
docs/credmanager.md, "Globus Compute site key"): Globus Compute carries ciphertext only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .site_receiver import VERSION, aad, key_id


def seal(data: bytes, *, key: bytes, dest: str, setup: str, name: str, issued: float) -> str:
    """An envelope (JSON text) holding ``data`` for ``dest``, sealed at ``issued``."""
    header = {
        "v": VERSION,
        "alg": "A256GCM",
        "kid": key_id(key),
        "setup": setup,
        "name": name,
        "dest": dest,
        "issued": issued,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    nonce = secrets.token_bytes(12)
    body = AESGCM(key).encrypt(nonce, data, aad(header))
    return json.dumps(
        {**header, "nonce": base64.b64encode(nonce).decode(), "ct": base64.b64encode(body).decode()}
    )
