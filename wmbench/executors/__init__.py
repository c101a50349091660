"""Sweep executors: where ``wmbench sweep`` runs its cells (``--executor local|slurm|ray``). The contract is in
:mod:`wmbench.executors.base`; this module registers the built-ins through the same hook a third party uses."""

from __future__ import annotations

from wmbench.hookspecs import hookimpl


@hookimpl
def wmbench_register_executors(register) -> None:
    from wmbench.executors.local import LocalExecutor
    from wmbench.executors.ray import RayExecutor
    from wmbench.executors.slurm import SlurmExecutor

    register("local", LocalExecutor, summary="processes on this machine, --jobs at a time (the default)")
    register("slurm", SlurmExecutor, summary="Slurm jobs through submitit, requeued on preemption or timeout")
    register("ray", RayExecutor, summary="Ray actors on a cluster (address) or a local instance")
