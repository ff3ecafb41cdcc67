"""Stock Harvester's placeholder values, with stock's formulas, for operators' own templates.

Every placeholder of stock ``slurm_submitter.make_placeholder_map`` is here, computed as stock
computes it, so an operator's stock-style template renders byte for byte as with stock
``str.format_map`` when its values are plain.  One deviation: ``logSubDir`` takes its hour
from the worker's own time (``WorkerInfo.created``), not from the clock, so a worker's script
is the same whenever it is rendered.  Nodes and walltime decided here are the ones the
``#SBATCH`` block and the job spec use.
"""

from __future__ import annotations

import datetime
import math
import os

from .batch_config import BatchConfig
from .paths import expand_worker_path
from .worker import WorkerInfo, worker_time

__all__ = ["gtag", "stock_placeholders"]


def stock_placeholders(
    cfg: BatchConfig, worker: WorkerInfo, now: datetime.datetime | None = None
) -> dict[str, object]:
    """Stock ``slurm_submitter.make_placeholder_map`` values, with its formulas.

    Two deviations: a configured ``nNode`` is used as it is (level 2), and with no worker
    ``nCore`` the total is ``nCorePerNode * nNode``; a configured ``walltimeSeconds`` wins
    over the worker's ``maxWalltime``.  Without them everything is stock.
    """
    per_node = cfg.n_core_per_node
    total = worker.n_core or per_node * (cfg.n_node or 1)
    n_node = cfg.n_node or math.ceil(total / per_node)
    ram = max(worker.min_ram_mb, total) if worker.min_ram_mb else total
    walltime = cfg.walltime_s or worker.max_walltime_s or 0
    cputime = walltime * total
    log_dir = worker.work_dir
    if cfg.log_dir:
        log_dir = expand_worker_path(
            cfg.log_dir, worker.harvester_id, worker.worker_id, worker.queue
        )
    when = worker_time(worker, now)
    values: dict[str, object] = {
        "nCorePerNode": per_node,
        "nCoreTotal": total * cfg.n_core_factor,
        "nCoreFactor": cfg.n_core_factor,
        "nNode": n_node,
        "requestRam": ram * cfg.n_core_factor,
        "requestRamBytes": ram * 2**20 * cfg.n_core_factor,
        "requestRamPerCore": math.ceil(ram * n_node / total),
        "requestRamBytesPerCore": math.ceil(ram * 2**20 * n_node / total),
        "requestDisk": worker.max_disk_mb * 1024 if worker.max_disk_mb else 1,
        "requestWalltime": walltime,
        "requestWalltimeMinute": math.ceil(walltime / 60),
        "requestCputime": cputime,
        "requestCputimeMinute": math.ceil(cputime / 60),
        "accessPoint": worker.work_dir,
        "harvesterID": worker.harvester_id,
        "workerID": worker.worker_id,
        "computingSite": worker.queue,
        "pandaQueueName": worker.queue,
        "localQueueName": cfg.local_queue_name,
        "logDir": log_dir,
        "logSubDir": os.path.join(log_dir, when.strftime("%y-%m-%d_%H")),
        "jobType": worker.job_type,
        "gtag": gtag(cfg, worker),
    }
    optional = {
        "tokenDir": cfg.token_dir,
        "tokenName": cfg.token_name,
        "tokenOrigin": cfg.token_origin,
        "submitMode": cfg.submit_mode,
    }
    values.update({k: v for k, v in optional.items() if v is not None})
    return values


def gtag(cfg: BatchConfig, worker: WorkerInfo) -> str:
    """Base of each pilot's GTAG (``<base>/<node>/slot<k>``): the log URL, else the job name."""
    if cfg.log_base_url:
        url = cfg.log_base_url
        if "${workerID}" not in url:
            url = url.rstrip("/") + "/${harvesterID}/${workerID}"
        return expand_worker_path(url, worker.harvester_id, worker.worker_id, worker.queue)
    return worker.job_name
