"""Where grid jobs run: this process, a local process pool, or a Dask cluster.

Every executor runs :func:`sceval.benchmark.jobs.run_job` on each job; the job writes
its cells' files itself, so results survive a crash of the driver or of a worker.

Dask: ``DaskExecutor(address="tcp://scheduler:8786")`` connects to a running cluster
(``dask scheduler`` + ``dask worker``, or a dask-jobqueue ``SLURMCluster``'s
``scheduler_address``); ``DaskExecutor(n_workers=N)`` starts a ``LocalCluster`` of N
single-threaded worker processes. Jobs of foundation models on a GPU device are
submitted with ``resources={"GPU": 1}``: start GPU workers with ``dask worker ADDRESS
--resources GPU=1`` (one per GPU), or those jobs never start (with ``device: auto`` they
are only annotated when some worker offers a GPU). Workers write the cell files and the
embedding cache themselves: the output folder and the dataset files must be visible to
every worker at the same paths (a shared file system, as on a SLURM cluster).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from sceval.benchmark.grid import Job
from sceval.benchmark.jobs import run_job

__all__ = ["DaskExecutor", "Executor", "InlineExecutor", "ProcessExecutor", "make_executor"]

OnCell = Callable[[dict[str, Any]], None]


class Executor:
    """Base class: ``run(jobs, on_cell)`` returns the errors of jobs that did not finish."""

    kind = "inline"

    def run(self, jobs: list[Job], on_cell: OnCell) -> list[str]:
        """Run ``jobs``; ``on_cell`` is called per finished cell (or per job's cells)."""
        raise NotImplementedError

    def gpu_workers(self) -> bool:
        """Whether some worker offers a GPU (Dask resource ``GPU``)."""
        return False

    def describe(self) -> dict[str, Any]:
        """For ``run.json``."""
        return {"kind": self.kind}

    def close(self) -> None:
        """Release workers started by this executor."""


class InlineExecutor(Executor):
    """Run jobs one after another in this process (the default)."""

    kind = "inline"

    def run(self, jobs: list[Job], on_cell: OnCell) -> list[str]:
        for job in jobs:
            run_job(job, on_cell)
        return []


class ProcessExecutor(Executor):
    """A local pool of ``n_workers`` processes (spawned, so no state is shared)."""

    kind = "processes"

    def __init__(self, n_workers: int | None = None) -> None:
        import os

        self.n_workers = int(n_workers or max(1, (os.cpu_count() or 2) - 1))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.n_workers}

    def run(self, jobs: list[Job], on_cell: OnCell) -> list[str]:
        errors: list[str] = []
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=self.n_workers, mp_context=ctx)
        try:
            futures = {pool.submit(run_job, job): job for job in jobs}
            for fut in as_completed(futures):
                try:
                    for item in fut.result():
                        on_cell(item)
                except Exception as err:
                    errors.append(f"job {futures[fut].key}: {type(err).__name__}: {err}")
        except BaseException:  # Ctrl-C: stop the workers now (finished cells are saved)
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            raise
        pool.shutdown(wait=True)
        return errors


class DaskExecutor(Executor):
    """Jobs on a Dask distributed cluster.

    Parameters
    ----------
    address
        Scheduler address of a running cluster (``tcp://host:8786``).
    n_workers
        Without ``address``: start a ``LocalCluster`` with this many single-threaded
        worker processes (closed again by :meth:`close`).
    client
        An existing ``distributed.Client`` (not closed by :meth:`close`).
    """

    kind = "dask"

    def __init__(
        self, address: str | None = None, n_workers: int | None = None, client: Any = None
    ) -> None:
        try:
            import distributed
        except ImportError as err:
            from sceval._errors import MissingDependencyError

            msg = (
                "the Dask executor needs the 'distributed' package; install it with "
                "pip install 'sceval[dask]' (or pip install dask distributed)."
            )
            raise MissingDependencyError(msg) from err
        self._own: list[Any] = []
        self.address = address
        if client is not None:
            self.client = client
        elif address is not None:
            self.client = distributed.Client(address)
            self._own.append(self.client)
        else:
            cluster = distributed.LocalCluster(
                n_workers=int(n_workers or 2),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            self.client = distributed.Client(cluster)
            self._own += [self.client, cluster]

    def describe(self) -> dict[str, Any]:
        info = self.client.scheduler_info()
        return {
            "kind": self.kind,
            "scheduler": info.get("address"),
            "workers": len(info.get("workers", {})),
        }

    def gpu_workers(self) -> bool:
        workers = self.client.scheduler_info().get("workers", {})
        return any(w.get("resources", {}).get("GPU", 0) for w in workers.values())

    def run(self, jobs: list[Job], on_cell: OnCell) -> list[str]:
        import uuid

        from distributed import as_completed as dask_completed

        errors: list[str] = []
        tag = uuid.uuid4().hex[:8]
        futures = {}
        for job in jobs:
            fut = self.client.submit(
                run_job,
                job,
                key=f"sceval-job-{job.key}-{tag}",
                pure=False,
                resources={"GPU": 1} if job.gpu else None,
            )
            futures[fut.key] = (fut, job)
        try:
            for fut in dask_completed([f for f, _ in futures.values()]):
                job = futures[fut.key][1]
                try:
                    for item in fut.result():
                        on_cell(item)
                except Exception as err:  # e.g. KilledWorker: finished cells are on disk
                    errors.append(f"job {job.key}: {type(err).__name__}: {err}")
        except BaseException:  # Ctrl-C: cancel what has not run (finished cells are saved)
            self.client.cancel([f for f, _ in futures.values()])
            raise
        return errors

    def close(self) -> None:
        for obj in self._own:
            try:
                obj.close()
            except Exception:
                pass
        self._own = []


def make_executor(
    kind: str | Executor | Any = "inline",
    *,
    workers: int | None = None,
    address: str | None = None,
) -> Executor:
    """An executor from its kind (``inline``, ``processes``, ``dask``), an
    :class:`Executor`, or a ``distributed.Client``."""
    if isinstance(kind, Executor):
        return kind
    if type(kind).__name__ == "Client" and hasattr(kind, "submit"):
        return DaskExecutor(client=kind)
    if kind == "inline":
        return InlineExecutor()
    if kind == "processes":
        return ProcessExecutor(workers)
    if kind == "dask":
        return DaskExecutor(address=address, n_workers=workers)
    msg = f"unknown executor {kind!r}; expected 'inline', 'processes' or 'dask'."
    raise ValueError(msg)
