"""The remote credential manager's core (the plugin: ``plugins/credmanager.py``).

- ``store``: the per-setup encrypted store (AES-256-GCM, key from a file or a variable).
- ``audit``: one JSON line per issue, renew, deliver, verify, revoke.
- ``redaction``: secret values never reach a log record or an exception text we log.
- ``policy``: when to renew (a fraction of the lifetime left, on ``lifecycle.now``).
- ``sources``: pilot token/proxy files another credential manager keeps.
- ``facility``: each family's facility credential (facts, renewal, rotation).
- ``delivery``: channels to the pilot directory (local, SFAPI, envelope, unsupported);
  ``envelope``/``site_receiver``: end-to-end encryption for Globus Compute.
- ``keeper``: one setup's check / renew / deliver / verify.
- ``harvester_cfg``: reads ``panda_harvester.cfg`` the way Harvester does.
"""
