"""What the demo and the experiment print: progress bars on stderr while they work, tables at the end."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

if TYPE_CHECKING:  # the table functions take results; importing them here would be circular
    from visionloop.demo.experiment import Comparison
    from visionloop.demo.rounds import RoundRow


class Progress:
    """tqdm bars, or nothing at all (tests, ``--quiet``)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr

    @contextmanager
    def bar(self, description: str, total: float | None = None, unit: str = "frame") -> Iterator[tqdm]:
        with tqdm(
            total=total,
            desc=description,
            unit=unit,
            file=self.stream,
            disable=not self.enabled,
            leave=False,
            dynamic_ncols=True,
        ) as bar:
            yield bar

    def say(self, text: str) -> None:
        """A line between the bars."""
        if self.enabled:
            tqdm.write(text, file=self.stream)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    body = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def rounds_table(rows: Sequence[RoundRow]) -> str:
    """One line per round of the demo."""
    header = (
        "round",
        "uploads",
        "annotated",
        "images",
        "model",
        "mAP@0.5",
        "detect p50 ms",
        "stream p50 ms",
        "frames served",
        "seconds",
    )
    return _table(
        header,
        [
            (
                str(r.round),
                str(r.uploads),
                f"+{r.annotated}",
                str(r.images),
                f"{r.version} ({r.held} held)" if r.held else r.version,
                f"{r.map50:.3f}",
                f"{r.detect_p50_ms:.1f}",
                "-" if r.stream_p50_ms is None else f"{r.stream_p50_ms:.1f}",
                str(r.served),
                f"{r.seconds:.0f}",
            )
            for r in rows
        ],
    )


def comparison_table(result: Comparison) -> str:
    """mAP@0.5 per round and arm (mean ± std over seeds), and what each arm's frames held."""
    from visionloop.demo.experiment import mean_std

    names = {"active": "active learning", "random": "random", "ranked": "ranked"}
    rows = []
    for round_ in range(1, result.config.rounds + 1):
        picked = [s.arms["active"][round_ - 1].picked for s in result.seeds]
        frames = max(sum(picked), 1)
        row = ["1 (bootstrap)" if round_ == 1 else str(round_), f"{sum(picked) / len(picked):.0f}"]
        for arm in result.arms:
            mean, std = mean_std(result.maps(arm, round_))
            row.append(f"{mean:.3f} ± {std:.3f}")
        row.append(f"{mean_std(result.maps('active', round_))[0] - mean_std(result.maps('random', round_))[0]:+.3f}")
        objects = [sum(s.arms[arm][round_ - 1].objects for s in result.seeds) / frames for arm in result.arms]
        row.append(" / ".join(f"{o:.1f}" for o in objects))
        rows.append(row)
    header = [
        "round",
        "frames",
        *(names.get(arm, arm) for arm in result.arms),
        "AL - random",
        "objects per frame (" + " / ".join(result.arms) + ")",
    ]
    lines = [_table(header, rows)]
    for arm in result.arms:
        if arm == "random":
            continue
        gains = result.gains(arm)
        mean, std = mean_std(gains)
        lines.append(
            f"final round, {names.get(arm, arm)} minus random: {mean:+.3f} ± {std:.3f} mAP@0.5, "
            f"ahead on {sum(g > 0 for g in gains)} of {len(gains)} seeds ({', '.join(f'{g:+.3f}' for g in gains)})"
        )
    return "\n".join(lines)
