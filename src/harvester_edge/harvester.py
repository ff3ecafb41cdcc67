# Harvester's WorkSpec creates its columns dynamically and the stand-ins redefine the
# imported names by design; mypy cannot follow either.
# mypy: disable-error-code="no-redef,attr-defined,has-type,var-annotated,index"
"""Compatibility layer: PanDA Harvester's classes when importable, faithful stand-ins otherwise.

`pandaharvester` is not installable everywhere (tests, CI, operators' laptops), but the plugins
must load unchanged through Harvester's own ``PluginFactory``.  Everything Harvester-specific
that the plugins touch is imported from here, so exactly one module decides which classes are
real.  The stand-ins copy upstream behaviour that matters to plugins (release 0.7.x):
``PluginBase`` sets every kwarg as an attribute, ``WorkSpec`` raises ``AttributeError`` on
unknown attributes and cuts ``errorDiag`` at 256 characters, ``BaseSweeper`` requires
``sweep_worker``.
"""

from __future__ import annotations

import abc
import logging
import re
from typing import Any

__all__ = [
    "HAVE_HARVESTER",
    "PluginBase",
    "BaseSweeper",
    "BaseCredManager",
    "WorkSpec",
    "setup_logger",
    "make_logger",
    "harvester_id",
]

try:  # pragma: no cover - exercised only where pandaharvester is installed
    from pandaharvester.harvestercore import core_utils as _core_utils
    from pandaharvester.harvestercore.plugin_base import PluginBase
    from pandaharvester.harvestercore.work_spec import WorkSpec
    from pandaharvester.harvestercredmanager.base_cred_manager import BaseCredManager
    from pandaharvester.harvestersweeper.base_sweeper import BaseSweeper

    HAVE_HARVESTER = True

    def setup_logger(name: str) -> Any:
        """Harvester's module logger (file ``<logdir>/panda-<name>.log``)."""
        return _core_utils.setup_logger(name)

    def make_logger(base: Any, token: str | None = None, method_name: str | None = None) -> Any:
        return _core_utils.make_logger(base, token=token, method_name=method_name)

    def harvester_id() -> str:
        from pandaharvester.harvesterconfig import harvester_config

        return str(harvester_config.master.harvester_id)

except ImportError:
    HAVE_HARVESTER = False

    _HARVESTER_ID = "harvester-edge-local"

    def harvester_id() -> str:
        """The Harvester instance id; the stand-in reads ``HARVESTER_ID`` from the environment."""
        import os

        return os.environ.get("HARVESTER_ID", _HARVESTER_ID)

    def setup_logger(name: str) -> Any:
        """Stand-in for ``core_utils.setup_logger``: a stdlib logger named ``panda.log.<name>``."""
        return logging.getLogger(f"panda.log.{name}")

    class _TokenAdapter(logging.LoggerAdapter):
        def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
            return f"{self.extra['prefix']} {msg}", kwargs

    def make_logger(base: Any, token: str | None = None, method_name: str | None = None) -> Any:
        """Stand-in for ``core_utils.make_logger``: prefixes ``method <token>`` like Harvester."""
        prefix = method_name or ""
        prefix += f" <{token}>" if token is not None else " :"
        return _TokenAdapter(base, {"prefix": prefix})

    class PluginBase:
        """Stand-in for ``harvestercore.plugin_base.PluginBase``."""

        def __init__(self, **kwarg: Any) -> None:
            for key, value in kwarg.items():
                setattr(self, key, value)

        def make_logger(
            self,
            base_log: Any,
            token: str | None = None,
            method_name: str | None = None,
            send_dialog: bool = True,
        ) -> Any:
            return make_logger(base_log, token=token, method_name=method_name)

    class BaseSweeper(PluginBase, metaclass=abc.ABCMeta):
        """Stand-in for ``harvestersweeper.base_sweeper.BaseSweeper``."""

        @abc.abstractmethod
        def sweep_worker(self, workspec: Any) -> tuple[bool, str]:
            raise NotImplementedError

    class BaseCredManager(PluginBase):
        """Stand-in for ``harvestercredmanager.base_cred_manager.BaseCredManager``."""

        def check_credential_lifetime(self) -> float | None:
            return None

        def check_credential(self) -> bool:
            return True

        def renew_credential(self) -> tuple[bool, str]:
            return True, ""

    _WORKSPEC_COLUMNS = (
        "workerID batchID mapType queueName status hasJob workParams workAttributes "
        "eventsRequestParams eventsRequest computingSite creationTime submitTime startTime "
        "endTime nCore walltime accessPoint modificationTime lastUpdate eventFeedTime lockedBy "
        "postProcessed nodeID minRamCount maxDiskCount maxWalltime killTime computingElement "
        "nJobsToReFill logFilesToUpload jobType resourceType nativeExitCode nativeStatus "
        "diagMessage nJobs submissionHost configID syncLevel checkTime ioIntensity harvesterHost "
        "pilotType eventFeedLock errorCode errorDiag"
    ).split()

    class WorkSpec:
        """Stand-in for ``harvestercore.work_spec.WorkSpec`` (the parts plugins use)."""

        ST_submitted = "submitted"
        ST_running = "running"
        ST_finished = "finished"
        ST_failed = "failed"
        ST_ready = "ready"
        ST_cancelled = "cancelled"
        ST_idle = "idle"
        ST_missed = "missed"
        ST_pending = "pending"
        ST_LIST = [
            ST_submitted, ST_running, ST_finished, ST_failed,
            ST_ready, ST_cancelled, ST_idle, ST_missed,
        ]  # fmt: skip

        MT_NoJob = "NoJob"
        MT_OneToOne = "OneToOne"
        MT_MultiJobs = "ManyToOne"
        MT_MultiWorkers = "OneToMany"

        attributes = tuple(_WORKSPEC_COLUMNS)

        def __init__(self) -> None:
            for attr in self.attributes:
                object.__setattr__(self, attr, None)
            object.__setattr__(self, "changedAttrs", {})
            object.__setattr__(self, "jobspec_list", None)
            object.__setattr__(self, "isNew", False)

        def __setattr__(self, name: str, value: Any) -> None:
            old = getattr(self, name)  # AttributeError for a non-column, as upstream
            object.__setattr__(self, name, value)
            if old != value:
                self.changedAttrs[name] = value

        def force_update(self, name: str) -> None:
            if name in self.attributes:
                self.changedAttrs[name] = getattr(self, name)

        def is_final_status(self) -> bool:
            return self.status in (
                self.ST_finished, self.ST_failed, self.ST_cancelled, self.ST_missed,
            )  # fmt: skip

        def set_status(self, value: str) -> None:
            if value == self.ST_submitted and self.status in (self.ST_running, self.ST_idle):
                return
            self.status = value

        def get_access_point(self) -> str:
            """Expand ``${attr}`` and ``${harvesterID}`` in ``accessPoint`` like upstream."""
            if self.accessPoint and "$" in self.accessPoint:
                for name in re.findall(r"\$\{([a-zA-Z\d_.]+)\}", self.accessPoint):
                    value = None
                    if hasattr(self, name):
                        value = str(getattr(self, name))
                    elif name == "harvesterID":
                        value = harvester_id()
                    if value is not None:
                        self.accessPoint = self.accessPoint.replace("${" + name + "}", value)
            return self.accessPoint

        def set_jobspec_list(self, jobspec_list: list[Any]) -> None:
            self.jobspec_list = jobspec_list

        def get_jobspec_list(self) -> list[Any] | None:
            return self.jobspec_list

        def set_work_params(self, data: dict[str, Any] | None) -> None:
            if data is None:
                return
            if self.workParams is None:
                self.workParams = {}
            for key, value in data.items():
                if self.workParams.get(key, object()) != value:
                    self.workParams[key] = value
                    self.force_update("workParams")

        def get_work_params(self, name: str) -> tuple[bool, Any]:
            if self.workParams is None or name not in self.workParams:
                return False, None
            return True, self.workParams[name]

        def set_work_attributes(self, data: dict[str, Any] | None) -> None:
            if data is None:
                return
            if self.workAttributes is None:
                self.workAttributes = {}
            for key, value in data.items():
                if self.workAttributes.get(key, object()) != value:
                    self.workAttributes[key] = value
                    self.force_update("workAttributes")

        def get_work_attribute(self, name: str) -> tuple[bool, Any]:
            if self.workAttributes is None or name not in self.workAttributes:
                return False, None
            return True, self.workAttributes[name]

        def has_work_attribute(self, name: str) -> bool:
            return self.workAttributes is not None and name in self.workAttributes

        def update_log_files_to_upload(
            self,
            file_path: str,
            position: int,
            remote_name: str | None = None,
            stream_type: str | None = None,
        ) -> None:
            if self.logFilesToUpload is None:
                self.logFilesToUpload = {}
            if stream_type is not None:  # one file per stream: the newest replaces the older
                for path, info in list(self.logFilesToUpload.items()):
                    if info["stream_type"] == stream_type:
                        del self.logFilesToUpload[path]
            if file_path not in self.logFilesToUpload:
                self.logFilesToUpload[file_path] = {
                    "position": position, "remote_name": remote_name, "stream_type": stream_type,
                }  # fmt: skip
                self.force_update("logFilesToUpload")
            elif self.logFilesToUpload[file_path]["position"] != position:
                self.logFilesToUpload[file_path]["position"] = position
                self.force_update("logFilesToUpload")

        def set_log_file(self, log_type: str, stream: str) -> None:
            """Upstream: an ``http...`` URL is kept as the link; a local file is uploaded by
            the propagator to PanDA's cache as ``<harvesterID>__<basename>`` and linked
            there (the stand-in's cache URL: ``PANDA_CACHE_URL_R``)."""
            key = {"stdout": "stdOut", "stderr": "stdErr", "jdl": "jdl"}.get(log_type, "batchLog")
            if stream.startswith("http"):
                url = stream
            else:
                import os

                remote = f"{harvester_id()}__{os.path.basename(stream)}"
                cache = os.environ.get(
                    "PANDA_CACHE_URL_R", "https://pandaserver.cern.ch:25443/cache"
                )
                url = f"{cache}/{remote}"
                self.update_log_files_to_upload(stream, 0, remote, key)
            self.set_work_attributes({key: url})

        def set_dialog_message(self, msg: str | None) -> None:
            if msg not in (None, ""):
                self.diagMessage = str(msg)[:500]

        def set_pilot_error(self, error_code: int, error_dialog: str) -> None:
            self.set_work_attributes({"pilotErrorCode": error_code, "pilotErrorDiag": error_dialog})

        def set_supplemental_error(self, error_code: int | None, error_diag: str | None) -> None:
            if error_code is not None:
                self.errorCode = error_code
            if error_diag not in (None, ""):
                self.errorDiag = str(error_diag)[:256]
