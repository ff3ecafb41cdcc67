"""One credential-manager setup, validated once from the plugin's keyword arguments.

The keys are the same in the three Harvester config styles (``[credmanager]`` parallel
lists with ``inCertFile`` naming a JSON file of these keys, ``pluginConfigs`` setups, and
per-queue ``credmanagers`` entries).  No key holds a secret: keys are files (0600) or the
*names* of environment variables.  Write no ``$`` in ``pluginConfigs`` values: Harvester's
config parser replaces any such string whole by an environment variable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..config import Secret, check

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class PilotCredential:
    """A token or proxy file another credential manager keeps, and where pilots read it."""

    name: str
    source: str
    remote_path: str


@dataclass(frozen=True, kw_only=True)
class CredOptions:
    #: the setup (Harvester sets it: the pluginConfigs key, or the queue name)
    setup_name: str = ""
    queueName: str = ""
    #: Harvester's metric key for check_credential_lifetime (default harvester-edge:<setup>)
    outCertFile: str = ""
    #: the queues whose pilots use this setup's credentials (the throttler stops them while
    #: a pilot credential is missing or expiring); the per-queue style adds queueName
    queues: list[str] = field(default_factory=list)
    #: the queue's submitter section whose facility credential is watched and whose client
    #: delivers: {"module": "harvester_edge.plugins.sfapi", "name": "SFAPISubmitter", ...}
    facility: dict[str, Any] = field(default_factory=dict)
    #: [{"name": "panda_token", "source": "/local/path", "remotePath": "/facility/path"}]
    pilotCredentials: list[dict[str, Any]] = field(default_factory=list)
    #: the encrypted local store (one 0700 directory per setup below it)
    storeDir: str = "/var/lib/harvester-edge/credentials"
    #: the store's master key: a 0600 file, or the NAME of an environment variable
    storeKeyFile: str = ""
    storeKeyEnv: str = ""
    #: the audit trail (default <storeDir>/audit.jsonl)
    auditLog: str = ""
    #: renew a pilot credential when this fraction of its lifetime is left
    renewFraction: float = 0.25
    #: ... or when this many seconds are left, whichever comes first
    renewMinSeconds: float = 300.0
    #: warn (SFAPI client) or rotate (S3M/IRI token) this many days before expiry
    warnDays: float = 7.0
    #: where the operator drops a newer S3M/IRI token (default: token file + ".next")
    nextTokenFile: str = ""
    #: delivery channel: "" (the family's), "local", "globus-compute", "none"
    channel: str = ""
    #: globus-compute channel: the envelope key here (0600) and the site's copy
    envelopeKeyFile: str = ""
    siteKeyFile: str = ""
    #: globus-compute channel: how long a delivery waits for its task's answer (the
    #: envelope is refused on the site after 900 s, so at most 600)
    deliveryWaitSeconds: float = 120.0
    #: IRI at NERSC/ALCF: a Globus confidential client mints the bearer token (written to
    #: the facility's token file) and renews it at renewFraction; the secret by reference
    globusClientId: str = ""
    globusClientSecret: Secret | None = None
    globusScope: str = ""
    globusAuthUrl: str = ""

    def __post_init__(self) -> None:
        check(bool(_NAME.match(self.setup_name)), "setup_name", "must be a plain name")
        check(
            0 < self.renewFraction < 1,
            "renewFraction",
            f"must be in (0, 1), got {self.renewFraction}",
        )
        check(self.renewMinSeconds >= 0, "renewMinSeconds", "must be >= 0")
        check(self.warnDays >= 0, "warnDays", "must be >= 0")
        check(self.storeDir.startswith("/"), "storeDir", "must be an absolute path")
        check(
            bool(self.storeKeyFile) != bool(self.storeKeyEnv),
            "storeKeyFile",
            "or storeKeyEnv (one of them) names the store key; the key itself never goes "
            "in a config file",
        )
        check(
            not self.storeKeyEnv or bool(_ENV.match(self.storeKeyEnv)),
            "storeKeyEnv",
            "is the NAME of an environment variable (no $)",
        )
        check(
            self.channel in ("", "local", "globus-compute", "none"),
            "channel",
            f"must be '', local, globus-compute or none, got {self.channel!r}",
        )
        if self.facility:
            check(
                bool(self.facility.get("module")) and bool(self.facility.get("name")),
                "facility",
                "needs 'module' and 'name' of the queue's harvester-edge submitter",
            )
        if self.channel == "globus-compute":
            check(bool(self.envelopeKeyFile), "envelopeKeyFile", "is required for globus-compute")
            check(bool(self.siteKeyFile), "siteKeyFile", "is required for globus-compute")
            check(
                self.siteKeyFile.startswith("/"), "siteKeyFile", "must be an absolute path"
            )  # fmt: skip
        check(
            0 < self.deliveryWaitSeconds <= 600,
            "deliveryWaitSeconds",
            f"must be in (0, 600], got {self.deliveryWaitSeconds}",
        )
        if self.globusClientId:
            check(self.globusClientSecret is not None, "globusClientSecret", "is required")
            check(bool(self.globusScope), "globusScope", "is required")
        self.pilots()  # checks each entry

    def pilots(self) -> list[PilotCredential]:
        found: list[PilotCredential] = []
        for i, item in enumerate(self.pilotCredentials):
            key = f"pilotCredentials[{i}]"
            check(isinstance(item, dict), key, "must be an object")
            name, source, remote = item.get("name"), item.get("source"), item.get("remotePath")
            check(isinstance(name, str) and bool(_NAME.match(name)), key, "needs a plain 'name'")
            check(
                isinstance(source, str) and source.startswith("/"), key, "'source' must be absolute"
            )
            check(
                isinstance(remote, str) and remote.startswith("/"),
                key,
                "'remotePath' must be absolute",
            )
            found.append(PilotCredential(str(name), str(source), str(remote)))
        names = [p.name for p in found]
        check(len(set(names)) == len(names), "pilotCredentials", "has a name twice")
        return found

    @property
    def served_queues(self) -> list[str]:
        return list(dict.fromkeys([*self.queues, *([self.queueName] if self.queueName else [])]))

    @property
    def audit_path(self) -> str:
        return self.auditLog or f"{self.storeDir.rstrip('/')}/audit.jsonl"
