"""The remote credential manager's core (the plugin: ``plugins/credmanager.py``).

- ``store``: the per-setup encrypted store (AES-256-GCM, key from a file or a variable).
- ``audit``: one JSON line per issue, renew, deliver, verify, revoke.
- ``redaction``: secret values never reach a log record or an exception text we log.
- ``policy``: when to renew (a fraction of the lifetime left, on ``lifecycle.now``).
- ``sources``: pilot token/proxy files another credential manager keeps.
- ``facility``, ``tokens``, ``families``: each family's facility credential (facts, SFAPI
  client expiry, token rotation, Globus grants) and which support class serves a client.
- ``delivery``, ``remote``: channels to the pilot directory (local, envelope, SFAPI, IRI,
  unsupported); ``envelope``/``site_receiver``: end-to-end encryption for Globus Compute.
- ``facts``: pilot credentials' facts per queue, for the throttler.
- ``globus_grant``: a Globus confidential client's client-credentials grant.
- ``keeper``: one setup's check / renew / deliver / verify.
- ``harvester_cfg``: reads ``panda_harvester.cfg`` the way Harvester does.
"""
