"""The ``ray`` executor: each cell a detached Ray actor that runs it as its own ``wmbench`` process, on a running
Ray cluster (``address``) or on a Ray instance this sweep starts on this machine, bound to 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmbench.errors import WmbenchError
from wmbench.executors.base import ENDED, RUNNING, Executor, Task, run_task
from wmbench.rundir import RunDir

NAMESPACE = "wmbench"


@dataclass(frozen=True)
class RayOptions:
    address: str = ""
    """HOST:PORT of a running cluster's head (ray start --head), or "auto" [default: a Ray instance started for
    this sweep on this machine, bound to 127.0.0.1, that ends with it]."""
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    memory_per_cell_gb: float = 0.0
    """Memory Ray reserves for each cell [default: none reserved]."""
    local_cpus: int = 0
    """CPUs of the instance this sweep starts when there is no address [default: all]."""


def loopback_only() -> None:
    """Keep a Ray instance on this machine on 127.0.0.1: without this, Ray replaces a loopback node address with
    the machine's network address and binds its servers there; and send no usage statistics."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # "no cluster": every address is the loopback
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class CellActor:
    """A Ray actor that runs one cell (its process dies with the actor's worker)."""

    def run(self, task: Task) -> int:
        return run_task(task)


class RayExecutor(Executor):
    name = "ray"
    Options = RayOptions
    poll_s = 1.0

    def __init__(self, options: RayOptions, out: Path, jobs: int = 1):
        super().__init__(options, out, jobs)
        self.key = hashlib.sha1(str(self.out.absolute()).encode()).hexdigest()[:10]
        self.refs: dict[str, object] = {}

    def threads(self) -> int:
        return max(1, int(self.options.cpus_per_cell))

    def _actor_options(self, task: Task) -> dict:
        o = self.options
        options = {"name": f"{self.key}/{task.cell}", "namespace": NAMESPACE, "lifetime": "detached",
                   "num_cpus": o.cpus_per_cell, "num_gpus": o.gpus_per_cell, "max_restarts": 0,
                   "max_concurrency": 1}  # fmt: skip
        if o.memory_per_cell_gb:
            options["memory"] = int(o.memory_per_cell_gb * 2**30)
        return options

    def check(self) -> None:
        import ray

        if ray.is_initialized():
            return
        address = self.options.address
        if address and address != "auto":
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise WmbenchError(f"executor option 'address' must be HOST:PORT or auto, got {address!r}")
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except OSError as exc:
                raise WmbenchError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})") from None
        kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
        if not address or address.rpartition(":")[0] in ("127.0.0.1", "localhost"):
            loopback_only()
            kwargs["_node_ip_address"] = "127.0.0.1"
        if not address:  # an instance of our own, that ends with the sweep
            kwargs.update(include_dashboard=False, num_cpus=self.options.local_cpus or None)
        try:
            ray.init(address=address or None, **kwargs)
        except Exception as exc:  # noqa: BLE001 (ConnectionError and the like, worded by Ray)
            raise WmbenchError(
                f"cannot connect to Ray at {address or 'a local instance'}: {str(exc).splitlines()[0]}"
            ) from None

    def attach(self) -> bool:
        if not self.options.address:
            return False
        self.check()
        return True

    def submit(self, tasks: list[Task]) -> list[str]:
        import ray

        remote = ray.remote(CellActor)
        ids = []
        for task in tasks:
            options = self._actor_options(task)
            actor: Any = remote.options(**options).remote()
            self.refs[options["name"]] = actor.run.remote(task)  # held: a call whose reference is dropped may not run
            ids.append(options["name"])
        return ids

    def _actor(self, job_id: str):
        import ray

        try:
            return ray.get_actor(job_id, namespace=NAMESPACE)
        except ValueError:  # no live actor of that name
            return None

    def states(self, job_ids: list[str]) -> dict[str, tuple[str, str]]:
        """Running while the cell's actor lives and its exit record is not written; an actor whose cell is over is
        killed here (freeing its resources and its name)."""
        import ray

        out = {}
        for job in job_ids:
            actor = self._actor(job)
            if actor is not None and not self._record(job).is_file():
                out[job] = (RUNNING, "ALIVE")
                continue
            if actor is not None:
                ray.kill(actor)
            out[job] = (ENDED, "DEAD")
        return out

    def _record(self, job_id: str) -> Path:
        return self.out / "jobs" / f"{job_id.partition('/')[2]}.json"

    def cancel(self, job_id: str) -> None:
        import ray

        actor = self._actor(job_id)
        if actor is not None:
            ray.kill(actor)

    def describe(self, tasks: list[Task]) -> str:
        specs = [{"actor": "wmbench.executors.ray.CellActor", "options": self._actor_options(t),
                  "runs": t.argv(), "env": {"OMP_NUM_THREADS": str(t.threads)}, "log": str(RunDir(t.folder).log_file)}
                 for t in tasks]  # fmt: skip
        where = self.options.address or "a local Ray instance on 127.0.0.1"
        return f"# Ray actors this sweep would create on {where}, one per cell:\n{json.dumps(specs, indent=2)}\n"

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
