"""NERSC Superfacility API client, on ``sfapi_client``.

``sfapi_client`` provides the credentials handling (Iris key files, ``private_key_jwt`` token
grant through authlib); we do the requests ourselves through ``HttpxTransport`` because the
library's own calls retry a POST after a read timeout (duplicate jobs), wait for tasks in a
sleep loop with no timeout, and query one job per call.  Endpoint shapes:
shared/FACILITY_APIS.md.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import sfapi_client
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from sfapi_client._models import Outage

from ..edge.jobs import JobRecord, Resolution, SubmitReceipt, record_from_row
from ..edge.retry import RetryPolicy, Timeouts
from ..errors import EdgeAPIError, EdgeAuthError, EdgeConfigError
from .base import FacilityClient, Health, SubmitRequest
from .http import HttpxTransport

DEFAULT_API_URL = "https://api.nersc.gov/api/v1.2"
DEFAULT_TOKEN_URL = "https://oidc.nersc.gov/c2id/token"

_UNAVAILABLE = {"unavailable"}
_NO_SUCH_JOB = ("invalid job id", "not found", "no jobs found")


@dataclass(frozen=True)
class SFAPISettings:
    """What identifies one SFAPI client: endpoint + credential (the sharing key)."""

    machine: str
    api_url: str
    token_url: str
    key_file: str
    timeouts: Timeouts
    policy: RetryPolicy


def check_key_file(path: str) -> None:
    """Refuse a key file that others can read, before the library reads it."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        raise EdgeAuthError(f"SFAPI key file {path} does not exist") from None
    except OSError as exc:
        raise EdgeAuthError(f"SFAPI key file {path} cannot be read ({exc.strerror})") from None
    if mode & 0o077:
        raise EdgeAuthError(
            f"SFAPI key file {path} has mode {mode:04o}; it must be 0600 (run: chmod 600 {path})"
        )


class _KeyFileCredentials(sfapi_client.Client):
    """sfapi_client's own key-file reader and token grant, with our timeout and a lock."""

    def __init__(self, key_file: str, api_url: str, token_url: str, timeout: httpx.Timeout):
        super().__init__(key=key_file, api_base_url=api_url, token_url=token_url)
        self._edge_timeout = timeout
        self._edge_session: OAuth2Client | None = None
        self._edge_lock = threading.Lock()

    def session(self) -> OAuth2Client:
        """The token-carrying httpx client; fetches or renews the token under a lock."""
        with self._edge_lock:
            if self._edge_session is None:
                self._edge_session = OAuth2Client(
                    client_id=self._client_id,
                    client_secret=self._secret,
                    token_endpoint_auth_method=PrivateKeyJWT(self._token_url),
                    grant_type="client_credentials",
                    token_endpoint=self._token_url,
                    timeout=self._edge_timeout,
                    headers={"accept": "application/json"},
                )
            if not self._edge_session.token:
                self._edge_session.fetch_token()
            else:
                self._edge_session.ensure_active_token(self._edge_session.token)
            return self._edge_session

    def refresh(self) -> None:
        """Drop the token so the next request fetches a new one (after a 401/403)."""
        with self._edge_lock:
            if self._edge_session is not None:
                self._edge_session.token = None

    def close(self) -> None:
        with self._edge_lock:
            if self._edge_session is not None:
                self._edge_session.close()
                self._edge_session = None


def _kwargs(key: str, values: Sequence[str]) -> str:
    return f"{key}={','.join(values)}"


class SFAPIClient(FacilityClient):
    """One SFAPI machine through one Iris client key."""

    service = "sfapi"
    supports_files = True
    max_query_ids = 500

    def __init__(self, settings: SFAPISettings):
        self.settings = settings
        self._creds: _KeyFileCredentials | None = None
        self._user_name: str | None = None
        self._lock = threading.Lock()
        timeout = httpx.Timeout(settings.timeouts.read, connect=settings.timeouts.connect)
        self._timeout = timeout
        self.transport = HttpxTransport(
            "sfapi",
            settings.api_url,
            self._session,
            timeouts=settings.timeouts,
            policy=settings.policy,
            refresh_auth=self._refresh,
        )

    # credentials -------------------------------------------------------------------------
    def _credentials(self) -> _KeyFileCredentials:
        with self._lock:
            if self._creds is None:
                check_key_file(self.settings.key_file)
                try:
                    self._creds = _KeyFileCredentials(
                        self.settings.key_file,
                        self.settings.api_url,
                        self.settings.token_url,
                        self._timeout,
                    )
                except sfapi_client.exceptions.ClientKeyError:
                    raise EdgeAuthError(
                        f"SFAPI key file {self.settings.key_file} is not an Iris client key "
                        "(client id on the first line, then the private key)"
                    ) from None
            return self._creds

    def _session(self) -> httpx.Client:
        return self._credentials().session()

    def _refresh(self) -> None:
        self._credentials().refresh()

    def close(self) -> None:
        with self._lock:
            if self._creds is not None:
                self._creds.close()

    # FacilityClient ------------------------------------------------------------------------
    def health(self) -> Health:
        answer = self.transport.request(
            "GET", f"status/{self.settings.machine}", authenticated=False
        )
        if not isinstance(answer, dict) or "status" not in answer:
            raise EdgeAPIError("sfapi status: answer has no 'status' field", transient=True)
        state = str(answer["status"])
        notes = "; ".join(str(n) for n in (answer.get("notes") or []))
        message = " ".join(x for x in (str(answer.get("description") or ""), notes) if x)
        if state in _UNAVAILABLE:
            return Health(False, state, message)
        outage = self._current_outage()
        if outage is not None:
            return Health(False, "maintenance", outage)
        return Health(True, state, message)

    def _current_outage(self) -> str | None:
        """A planned outage under way now, as text; None when none (or it cannot be read:
        the machine's own status, read just before, is the authority then)."""
        try:
            answer = self.transport.request(
                "GET", f"status/outages/planned/{self.settings.machine}", authenticated=False
            )
            outages = [Outage.model_validate(o) for o in answer or []]
        except (EdgeAPIError, ValueError, TypeError):
            return None
        now = datetime.now(timezone.utc)
        for o in outages:
            if o.status is not None and o.status.value in ("Cancelled", "Completed"):
                continue
            start = o.start_at if o.start_at and o.start_at.tzinfo else None
            end = o.end_at if o.end_at and o.end_at.tzinfo else None
            if (start is None or start <= now) and (end is None or now < end) and (start or end):
                until = f" until {end:%Y-%m-%d %H:%M} UTC" if end else ""
                return f"planned outage{until}: {o.description or o.name}"
        return None

    def submit(self, request: SubmitRequest) -> SubmitReceipt:
        answer = self.transport.request(
            "POST",
            f"compute/jobs/{self.settings.machine}",
            data={"job": request.script, "isPath": "false"},
            idempotent=False,
        )
        if not isinstance(answer, dict):
            raise EdgeAPIError("sfapi submit: answer is not an object")
        if str(answer.get("status", "")).upper() != "OK" or not answer.get("task_id"):
            raise EdgeAPIError(f"sfapi submit refused: {answer.get('error') or 'no task id'}")
        return SubmitReceipt(handle=str(answer["task_id"]))

    def resolve(self, handles: Sequence[str]) -> dict[str, Resolution]:
        return {h: parse_submit_task(t) for h, t in self._tasks(handles).items()}

    def _tasks(self, handles: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The caller's tasks with these ids, from one ``GET /tasks`` request."""
        if not handles:
            return {}
        answer = self.transport.request("GET", "tasks/")
        tasks = answer.get("tasks") if isinstance(answer, dict) else None
        if not isinstance(tasks, list):
            raise EdgeAPIError("sfapi tasks: answer has no 'tasks' list", transient=True)
        wanted = set(handles)
        return {
            str(t["id"]): t for t in tasks if isinstance(t, dict) and str(t.get("id")) in wanted
        }

    def query(self, job_ids: Sequence[str], *, final: bool) -> dict[str, JobRecord]:
        if not job_ids:
            return {}
        rows = self._jobs({"sacct": "true" if final else "false"}, _kwargs("jobid", job_ids))
        records = self._records(rows, final)
        return {r.job_id: r for r in records}

    def find_by_tags(self, tags: Sequence[str]) -> dict[str, list[JobRecord]]:
        found: dict[str, dict[str, JobRecord]] = {}
        if not tags:
            return {}
        for final in (False, True):
            rows = self._jobs({"sacct": "true" if final else "false"}, _kwargs("name", tags))
            for record in self._records(rows, final):
                # a live record wins over an accounting one of the same job
                found.setdefault(record.name, {}).setdefault(record.job_id, record)
        wanted = set(tags)
        return {tag: list(jobs.values()) for tag, jobs in found.items() if tag in wanted}

    def cancel(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        if not job_ids:
            return {}

        def delete(job_id: str) -> tuple[str, str | None, str | None]:
            try:
                answer = self.transport.request(
                    "DELETE", f"compute/jobs/{self.settings.machine}/{job_id}"
                )
            except EdgeAPIError as exc:
                return job_id, None, str(exc)
            if not isinstance(answer, dict) or str(answer.get("status", "")).upper() != "OK":
                error = answer.get("error") if isinstance(answer, dict) else None
                return job_id, None, f"cancel refused: {error or 'malformed answer'}"
            return job_id, str(answer.get("task_id") or ""), None

        with ThreadPoolExecutor(max_workers=min(8, len(job_ids))) as pool:
            results = list(pool.map(delete, job_ids))
        out: dict[str, str | None] = {job_id: error for job_id, _, error in results}
        # The DELETE only queues a task; a task that ended in error means scancel refused.
        task_of = {task: job_id for job_id, task, error in results if task and error is None}
        if task_of:
            try:
                done = self._tasks(list(task_of))
            except EdgeAPIError:
                done = {}  # unknown: the caller confirms with Slurm anyway
            for task_id, task in done.items():
                error = task_error(task)
                if error:
                    out[task_of[task_id]] = f"cancel failed: {error}"
        return out

    def live_tags(self, prefix: str) -> list[str]:
        rows = self._jobs({"sacct": "false"}, f"user={self._user()}")
        return [str(r.get("name")) for r in rows if str(r.get("name", "")).startswith(prefix)]

    def _user(self) -> str:
        with self._lock:
            if self._user_name:
                return self._user_name
        answer = self.transport.request("GET", "account/")
        name = answer.get("name") if isinstance(answer, dict) else None
        if not name:
            raise EdgeAPIError("sfapi account: answer has no 'name'", transient=True)
        with self._lock:
            self._user_name = str(name)
        return self._user_name

    def read_text(self, path: str) -> str | None:
        answer = self.transport.request("GET", f"utilities/download/{self.settings.machine}/{path}")
        if not isinstance(answer, dict):
            raise EdgeAPIError("sfapi download: answer is not an object")
        if str(answer.get("status", "")).upper() != "OK":
            return None
        content = answer.get("file")
        return content if isinstance(content, str) else None

    # helpers -------------------------------------------------------------------------------
    def _jobs(self, params: dict[str, str], kwargs: str) -> list[dict[str, Any]]:
        answer = self.transport.request(
            "GET",
            f"compute/jobs/{self.settings.machine}",
            params={**params, "cached": "false", "kwargs": kwargs},
        )
        if not isinstance(answer, dict):
            raise EdgeAPIError("sfapi jobs: answer is not an object", transient=True)
        if str(answer.get("status", "")).upper() != "OK":
            error = str(answer.get("error") or "")
            if any(text in error.lower() for text in _NO_SUCH_JOB):
                return []
            raise EdgeAPIError(f"sfapi jobs query failed: {error[:200]}", transient=True)
        rows = answer.get("output") or []
        if not isinstance(rows, list):
            raise EdgeAPIError("sfapi jobs: 'output' is not a list", transient=True)
        return [row for row in rows if isinstance(row, dict)]

    @staticmethod
    def _records(rows: list[dict[str, Any]], final: bool) -> list[JobRecord]:
        records = []
        for row in rows:
            if "." in str(row.get("jobid", "")):
                continue  # a job step (sacct without -X)
            try:
                records.append(
                    record_from_row(
                        row,
                        source="accounting" if final else "queue",
                        name_key="jobname" if final else "name",
                    )
                )
            except ValueError as exc:
                raise EdgeAPIError(f"sfapi jobs: bad row: {exc}", transient=True) from None
        return records


# SFAPI task states before a result exists
_TASK_UNFINISHED = frozenset({"new", "running", "pending", ""})


def _task_result(task: dict[str, Any]) -> dict[str, Any]:
    raw = task.get("result")
    try:
        result = json.loads(raw) if isinstance(raw, str) else (raw or {})
    except ValueError:
        result = {"status": "error", "error": str(raw)[:300]}
    return result if isinstance(result, dict) else {"status": "error", "error": str(result)[:300]}


def task_error(task: dict[str, Any]) -> str | None:
    """The error of a finished task (e.g. scancel refused), None if fine or still running."""
    status = str(task.get("status") or "").lower()
    if status in _TASK_UNFINISHED:
        return None
    result = _task_result(task)
    if status == "completed" and str(result.get("status", "ok")).lower() == "ok":
        return None
    return str(result.get("error") or f"task {status}").strip()[:500]


def parse_submit_task(task: dict[str, Any]) -> Resolution:
    """Read an SFAPI task created by a job submit: pending, the job id, or sbatch's error."""
    status = str(task.get("status") or "").lower()
    if status in _TASK_UNFINISHED:
        return Resolution(Resolution.PENDING)
    result = _task_result(task)
    if status == "completed" and str(result.get("status", "")).lower() == "ok":
        if result.get("jobid"):
            return Resolution(Resolution.DONE, job_id=str(result["jobid"]))
        return Resolution(Resolution.ERROR, error="task completed without a job id")
    error = result.get("error") or f"task {status}"
    return Resolution(Resolution.ERROR, error=str(error).strip()[:500])


def settings_from_config(cfg: Any) -> SFAPISettings:
    """Build settings from a validated plugin config (see ``plugins/sfapi.py``)."""
    if not cfg.keyFile:
        raise EdgeConfigError("config key 'keyFile' is required (path to the Iris client key)")
    return SFAPISettings(
        machine=cfg.machine,
        api_url=cfg.apiUrl,
        token_url=cfg.tokenUrl,
        key_file=os.path.expanduser(cfg.keyFile),
        timeouts=Timeouts(cfg.connectTimeout, cfg.readTimeout),
        policy=RetryPolicy(
            attempts=cfg.retryAttempts, backoff=cfg.retryBackoff, deadline=cfg.callDeadline
        ),
    )
