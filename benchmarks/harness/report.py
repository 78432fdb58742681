"""Targets (each scenario states its own) and the Markdown table printed at the end of a run."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.base import fmt


@dataclass
class Target:
    scenario: str
    measure: str
    value: float | None
    op: str  # ">=", "<=" or "<": which side of ``threshold`` meets the target
    threshold: float
    note: str = ""


def target_met(target: Target) -> bool | None:
    if target.value is None:
        return None
    if target.op == ">=":
        return target.value >= target.threshold
    if target.op == "<=":
        return target.value <= target.threshold
    return target.value < target.threshold


def targets_of(
    name: str, scenario: Mapping[str, object], *measures: tuple[str, str, str, float]
) -> list[Target]:
    """One target per (measure, key in the scenario's results, op, threshold)."""
    found = []
    for measure, key, op, threshold in measures:
        value = scenario.get(key)
        number = float(value) if isinstance(value, int | float) else None
        found.append(Target(name, measure, number, op, threshold))
    return found


QUICK_TARGETS_NOTE = (
    "Quick run: the targets are set for the full sizes; at 5,000 bookings fixed costs "
    "(interpreter start, imports) weigh ten times more, so a NO here is a smoke reading, not a "
    "verdict. `make bench` judges them."
)

_HEADER = (
    "| scenario | tool | wall s (min-max) | inner s | CPU s (min-max) | CPU s / 10k bookings "
    "| peak RSS MiB | server CPU s | requests | rows | load (1 min, max) |"
)


def _range(median: object, low: object, high: object) -> str:
    if not isinstance(low, int | float) or not isinstance(high, int | float) or low == high:
        return fmt(median)
    return f"{fmt(median)} ({fmt(low)}-{fmt(high)})"


def _tool_lines(name: str, scenario: Mapping[str, object]) -> list[str]:
    lines = []
    medians = scenario.get("medians")
    if isinstance(medians, Mapping):
        for tool, m in medians.items():
            wall = _range(m["wall_s"], m.get("wall_s_min"), m.get("wall_s_max"))
            cpu = _range(m["cpu_s"], m.get("cpu_s_min"), m.get("cpu_s_max"))
            lines.append(
                f"| {name} | {tool} | {wall} | {fmt(m.get('inner_s'))} | {cpu} "
                f"| {fmt(m.get('cpu_s_per_10k'), 3)} | {fmt(m['max_rss_mib'], 0)} "
                f"| {fmt(m.get('server_cpu_s'))} | {fmt(m.get('requests'), 0)} "
                f"| {_rows_of(scenario, tool)} "
                f"| {fmt(m.get('load_1m'))}, {fmt(m.get('load_1m_max'))} |"
            )
    skipped = scenario.get("skipped")
    if isinstance(skipped, Mapping):
        for tool, why in skipped.items():
            lines.append(f"| {name} | {tool} | skipped: {why} | | | | | | | | |")
    runs = scenario.get("runs")
    if isinstance(runs, Mapping):
        for tool, tool_runs in runs.items():
            for run in tool_runs:
                if not run["ok"]:
                    error = run["error"]
                    lines.append(f"| {name} | {tool} run {run['run']} | FAILED: {error} |||||||||")
    if "error" in scenario:
        lines.append(f"| {name} | — | FAILED: {scenario['error']} |||||||||")
    return lines


def markdown(
    results: Mapping[str, Mapping[str, object]], found: Sequence[Target], *, quick: bool = False
) -> str:
    lines = [_HEADER, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, scenario in results.items():
        lines += _tool_lines(name, scenario)
    lines += ["", "| scenario | ratio | wall (targets) | in-process (info) |"]
    lines.append("|---|---|---:|---:|")
    for name, scenario in results.items():
        ratios, inner = scenario.get("ratios"), scenario.get("ratios_inner")
        if isinstance(ratios, Mapping):
            for pair, value in ratios.items():
                other = inner.get(pair) if isinstance(inner, Mapping) else None
                lines.append(f"| {name} | {pair} | {fmt(value)} | {fmt(other)} |")
    lines += ["", "| scenario | measure | value | target | met |", "|---|---|---:|---:|---|"]
    for target in found:
        met = target_met(target)
        shown = "n/a" if met is None else ("yes" if met else "NO")
        lines.append(
            f"| {target.scenario} | {target.measure} | {fmt(target.value, 3)} | "
            f"{target.op} {target.threshold:g} | {shown} |"
        )
    if quick:
        lines += ["", QUICK_TARGETS_NOTE]
    return "\n".join(lines)


def _rows_of(scenario: Mapping[str, object], tool: str) -> str:
    runs = scenario.get("runs")
    if isinstance(runs, Mapping):
        rows = {run["rows"] for run in runs.get(tool, []) if run["ok"]}
        return ",".join(str(r) for r in sorted(rows, key=str))
    return ""
