"""The no-op RQ job of the worker baseline: what RQ itself costs per job, nothing else."""


def noop() -> None:
    return None
