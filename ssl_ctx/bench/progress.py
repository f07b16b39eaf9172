"""The bench's progress lines: which cell starts, how long the bench has run and about how long is left."""
from __future__ import annotations

import time

from ssl_ctx.bench.plan import Cell


class BenchProgress:
    """The bench's overall progress line: cell number, elapsed time and an estimate of the time left.

    The estimate adds, for every cell still to run, the mean duration of the cells of its kind that ran in this
    process (kind = its probe, or the pretext of its method), divided by the number of cells running at once.
    Kinds differ by minutes (a context encoder's pretext) to a second (random init's), so there is no estimate
    until every kind still to run has been timed once: after the first seed, as cells run seed by seed.
    """

    def __init__(self, plan: list[Cell], parallel: int = 1) -> None:
        self.plan = plan
        self.parallel = parallel
        self.started = time.time()
        self.durations: dict[str, list[float]] = {}
        self.finished: set[Cell] = set()

    @staticmethod
    def kind(cell: Cell) -> str:
        return cell.probe or f"pretext {cell.method}"

    def after(self, cell: Cell, outcome: str, seconds: float) -> None:
        self.finished.add(cell)
        if outcome == "done":
            self.durations.setdefault(self.kind(cell), []).append(seconds)

    def remaining_seconds(self) -> float | None:
        left = [cell for cell in self.plan if cell not in self.finished]
        if any(self.kind(cell) not in self.durations for cell in left):
            return None
        return sum(_mean(self.durations[self.kind(cell)]) for cell in left) / self.parallel

    def before(self, number: int, cell: Cell, event: str = "") -> str:
        """The line printed as cell ``number`` starts; ``event`` follows its label (e.g. `` started on worker 2``)."""
        elapsed = time.time() - self.started
        left = self.remaining_seconds()
        estimate = f", about {duration(left)} left" if left is not None else ", time left known after the first seed"
        return f"bench [{number}/{len(self.plan)}] {cell.label()}{event} ({duration(elapsed)} elapsed{estimate})"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
