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
    """One line per round of the demo, and what the loop's picks bought over random ones."""
    header = (
        "round",
        "uploads",
        "candidates",
        "annotated",
        "images",
        "model",
        "mAP@0.5",
        "random picks",
        "detect p50 ms",
        "stream p50 ms",
        "frames served",
        "seconds",
    )
    table = _table(
        header,
        [
            (
                str(r.round),
                str(r.uploads),
                str(r.candidates),
                f"+{r.annotated}",
                str(r.images),
                f"{r.version} ({r.held} held)" if r.held else r.version,
                f"{r.map50:.3f}",
                "-" if r.random_map50 is None else f"{r.random_map50:.3f}",
                f"{r.detect_p50_ms:.1f}",
                "-" if r.stream_p50_ms is None else f"{r.stream_p50_ms:.1f}",
                str(r.served),
                f"{r.seconds:.0f}",
            )
            for r in rows
        ],
    )
    last = rows[-1] if rows else None
    if last is None or last.random_map50 is None:
        return table
    gain = last.map50 - last.random_map50
    return (
        f"{table}\n\nAfter round {last.round}: the loop's picks {last.map50:.3f} mAP@0.5, as many random frames "
        f"{last.random_map50:.3f} ({gain:+.3f}); one seed: `visionloop experiment` measures over several."
    )


def comparison_table(result: Comparison) -> str:
    """Per budget: mAP@0.5 per round and arm (mean ± std over seeds), the final round's paired differences
    from random, AP per category and mAP per situation, what the picks showed, and what choosing cost."""
    from visionloop.demo.experiment import RANDOM, budget_label, mean_std

    config = result.config
    frames = config.robots * config.frames
    sections = []
    for budget in result.budgets:
        label = budget_label(budget)
        rows = []
        for round_ in range(1, config.rounds + 1):
            row = ["1 (bootstrap)" if round_ == 1 else str(round_)]
            for arm in result.arms:
                mean, std = mean_std(result.maps(budget, arm, round_))
                row.append(f"{mean:.3f} ± {std:.3f}")
            rows.append(row)
        header = ["round", *(ARM_NAMES.get(arm, arm) for arm in result.arms)]
        draws = f" (random: the mean of {result.draws} draws)" if result.draws > 1 else ""
        lines = [
            f"Budget {label}: {round(budget * frames)} labels a round of the {frames} frames the robots saw{draws}",
            _table(header, rows),
            "",
            f"round {config.rounds} minus random (paired by seed): mean ± std, seeds ahead",
        ]
        for arm in result.arms:
            if arm == RANDOM:
                continue
            gains = result.gains(budget, arm)
            mean, std = mean_std(gains)
            ahead = sum(g > 0 for g in gains)
            each = ", ".join(f"{g:+.3f}" for g in gains)
            lines.append(f"  {ARM_NAMES.get(arm, arm):>16}  {mean:+.3f} ± {std:.3f}  {ahead} of {len(gains)}  ({each})")
        lines += ["", *_breakdown(result, budget)]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


ARM_NAMES = {
    "random": "random",
    "filter": "edge filter",
    "uncertainty": "uncertainty",
    "acquisition": "acquisition",
}


def _breakdown(result: Comparison, budget: float) -> list[str]:
    """The final round per category and per situation, what the picks showed, and what choosing cost."""
    from visionloop.demo.experiment import mean_std

    last = result.config.rounds
    finals = {arm: [rounds[last - 1] for rounds in result.rounds(budget, arm)] for arm in result.arms}
    first = next(iter(finals.values()))[0].scores
    header = ["", *(ARM_NAMES.get(arm, arm) for arm in result.arms)]
    rows = []
    for category in first.categories:
        values = [mean_std([r.scores.categories[category] for r in finals[arm]])[0] for arm in result.arms]
        rows.append([f"AP@0.5 {category}", *(f"{v:.3f}" for v in values)])
    for situation in first.situations:
        values = [mean_std([r.scores.situations[situation] for r in finals[arm]])[0] for arm in result.arms]
        rows.append([f"mAP@0.5 {situation} frames", *(f"{v:.3f}" for v in values)])
    for situation in sorted(
        {s for arm in result.arms for rounds in result.rounds(budget, arm) for r in rounds[1:] for s in r.situations}
    ):
        values = [
            mean_std(
                [sum(r.situations.get(situation, 0) for r in rounds[1:]) for rounds in result.rounds(budget, arm)]
            )[0]
            for arm in result.arms
        ]
        rows.append([f"picked: {situation} frames", *(f"{v:.1f}" for v in values)])
    candidates = [
        mean_std([r.candidates for rounds in result.rounds(budget, arm) for r in rounds[1:]])[0] for arm in result.arms
    ]
    rows.append(["candidates a round", *(f"{v:.0f}" for v in candidates)])
    cost = [
        mean_std([r.selection_seconds for rounds in result.rounds(budget, arm) for r in rounds[1:]])[0]
        for arm in result.arms
    ]
    rows.append(["choosing, ms a round", *(f"{v * 1000:.0f}" for v in cost)])
    return [f"round {last} (mean over seeds), and over rounds 2-{last}:", _table(header, rows)]
