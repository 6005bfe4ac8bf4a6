"""The suite's table: one row per journey, then totals."""

from __future__ import annotations

import math
from collections.abc import Sequence

from evals.runner import Result


def table(results: Sequence[Result], policy: str) -> str:
    rows = [("journey", "channel", "ok", "turns", "re-asked", "handoff", "switch s", "secs", "why not")]
    for r in results:
        handoff = "-" if r.handoff is None else ("ok" if r.handoff else "FAIL")
        switch = "-" if r.switch_seconds is None else f"{r.switch_seconds:.1f}"
        why = r.error or "; ".join(r.failures + [f"re-asked {s}" for s in r.reasked])
        rows.append((r.journey.id, _channels(r), "yes" if r.success else "NO", str(r.turns), str(len(r.reasked)),
                     handoff, switch, f"{r.seconds:.1f}", why[:90]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + ["", totals(results, policy)])


def totals(results: Sequence[Result], policy: str) -> str:
    n = len(results)
    succeeded = sum(r.success for r in results)
    reasked = sum(len(r.reasked) for r in results)
    turns = sum(r.turns for r in results)
    moves = [r for r in results if r.handoff is not None]
    handoffs = f"{sum(bool(r.handoff) for r in moves)}/{len(moves)}" if moves else "-"
    line = (f"policy {policy}: {n} journeys, task success {succeeded}/{n} ({100 * succeeded / max(n, 1):.0f}%), "
            f"re-asked slots {reasked}, turns {turns} (mean {turns / max(n, 1):.1f}), handoff success {handoffs}")
    if switches := sorted(r.switch_seconds for r in moves if r.handoff and r.switch_seconds is not None):
        line += f", offer accepted -> first message on the new channel p50 {percentile(switches, 50):.1f} s " \
                f"p95 {percentile(switches, 95):.1f} s"
    if judged := [r for r in results if r.verdict is not None]:
        line += f", judge passed {sum(bool(r.verdict.get('passed')) for r in judged)}/{len(judged)}"
    return line


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted `values` (with a handful of handoffs, interpolating would invent figures)."""
    return values[max(math.ceil(p / 100 * len(values)) - 1, 0)]


def transcript(result: Result) -> str:
    head = f"== {result.journey.id} ({_channels(result)}): {result.journey.goal}"
    lines = [head] + [f"  {who:>8}: {text}" for who, text in result.transcript]
    if result.verdict is not None:
        lines.append(f"  {'judge':>8}: {'passed' if result.verdict.get('passed') else 'FAILED'}: "
                     f"{result.verdict.get('reasons', '')}")
    if not result.success:  # last, so a log that keeps only its tail still says why
        lines.append(f"  {'why not':>8}: {result.error or '; '.join(result.failures)}")
    return "\n".join(lines)


def _channels(result: Result) -> str:
    moves = [line.follow for line in result.journey.lines if line.follow]
    return "->".join([result.journey.channel, *moves])
