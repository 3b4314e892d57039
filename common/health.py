"""What a GPU's health fields mean, in words: one table for the API, /metrics and the page.

- CLOCK_EVENT_REASONS: NVML's clock-event (throttle) bits, each with the name nvidia-smi and
  this project give it, and whether it is a finding: the GPU held back by heat or a hardware
  signal, not by its own choice (idle, clocks an application set, the power cap it runs at
  under full load).
- XID_MEANINGS: the XID errors people meet on data-centre GPUs, after NVIDIA's XID catalogue;
  an unknown code is "XID <n>" alone.
- findings(): the health problems one reading shows, each a kind and a short sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.messages import GpuHealth, GpuLimits, GpuReading


@dataclass(frozen=True)
class ClockEventReason:
    """One bit of NVML's clock-event reasons."""

    bit: int
    key: str  # the API's name of the flag
    text: str  # in words, as a card says it
    limiting: bool  # a limit holds the clocks down (a finding), not the GPU's own choice


CLOCK_EVENT_REASONS: tuple[ClockEventReason, ...] = (
    ClockEventReason(0x1, "gpu_idle", "GPU idle", False),
    ClockEventReason(0x2, "applications_clocks", "applications clocks setting", False),
    # at the power limit under full load is how a busy GPU runs: a flag, not a finding
    ClockEventReason(0x4, "sw_power_cap", "SW power cap", False),
    ClockEventReason(0x8, "hw_slowdown", "HW slowdown", True),
    ClockEventReason(0x10, "sync_boost", "sync boost", False),
    ClockEventReason(0x20, "sw_thermal", "SW thermal", True),
    ClockEventReason(0x40, "hw_thermal", "HW thermal", True),
    ClockEventReason(0x80, "hw_power_brake", "HW power brake", True),
)

LIMITING_REASONS_MASK = sum(reason.bit for reason in CLOCK_EVENT_REASONS if reason.limiting)

XID_MEANINGS: dict[int, str] = {
    8: "GPU stopped processing",
    13: "graphics engine exception",
    31: "GPU memory page fault",
    32: "invalid or corrupted push buffer stream",
    38: "driver firmware error",
    43: "GPU stopped processing (the application's fault)",
    45: "preemptive clean-up after earlier errors",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint or warning",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recorded",
    64: "ECC page retirement or row remapping failed",
    68: "video decoder exception",
    69: "graphics engine class error",
    74: "NVLink error",
    79: "GPU fell off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    109: "context switch timeout",
    119: "GSP RPC timeout",
    120: "GSP error",
    121: "C2C link error",
    154: "GPU recovery action changed",
}


BUSY_UTIL_PCT = 50  # at or above, a GPU's PCIe link should run at its full generation


def is_busy(util_gpu_pct: int | None) -> bool:
    """Return whether a GPU works hard enough that its link should be at full speed.

    A GPU lowers its link generation when it has little to do, and NVML's utilization is an
    average over its last sample period while the generation is the link's state now: only a
    GPU at BUSY_UTIL_PCT or more is held to its maximum generation.
    """
    return util_gpu_pct is not None and util_gpu_pct >= BUSY_UTIL_PCT


def reason_flags(mask: int | None) -> dict[str, bool] | None:
    """Return each named clock-event reason as a flag, or None when the mask is unknown."""
    if mask is None:
        return None
    return {reason.key: bool(mask & reason.bit) for reason in CLOCK_EVENT_REASONS}


def limiting_reasons(mask: int | None) -> list[str]:
    """Return, in words, the limits that hold the clocks down now ([] when none or unknown)."""
    if mask is None:
        return []
    return [reason.text for reason in CLOCK_EVENT_REASONS if reason.limiting and mask & reason.bit]


def xid_text(code: int) -> str:
    """Return "XID 79 (GPU fell off the bus)", or "XID <n>" for a code not in the table."""
    meaning = XID_MEANINGS.get(code)
    return f"XID {code}" if meaning is None else f"XID {code} ({meaning})"


def link_downgraded(health: GpuHealth, limits: GpuLimits | None, busy: bool) -> bool:
    """Return whether the PCIe link runs below what it can: narrower, or slower while busy.

    An idle GPU lowers its link generation to save power, as every recent GPU does: only a
    busy GPU's generation is held against its maximum. A narrower link is always a finding.
    """
    if limits is None:
        return False
    narrow = _below(health.pcie_link_width, limits.pcie_max_width)
    slow = busy and _below(health.pcie_link_gen, limits.pcie_max_gen)
    return narrow or slow


def link_text(health: GpuHealth, limits: GpuLimits) -> str:
    """Return "PCIe Gen4 x8 (max Gen4 x16)"."""
    return (
        f"PCIe Gen{_or_unknown(health.pcie_link_gen)} x{_or_unknown(health.pcie_link_width)}"
        f" (max Gen{_or_unknown(limits.pcie_max_gen)} x{_or_unknown(limits.pcie_max_width)})"
    )


# Every kind findings() gives, in a fixed order: bit 1 << i of a stored `findings` is kind i.
FINDING_KINDS: tuple[str, ...] = (
    "throttled",
    "remap_failure",
    "remap_pending",
    "retirement_pending",
    "ecc_uncorrected",
    "pcie_link",
    "nvlink_down",
)


def finding_bits(found: list[Finding]) -> int:
    """Return the kinds of the findings as the bits of FINDING_KINDS."""
    return sum(1 << FINDING_KINDS.index(kind) for kind in {finding.kind for finding in found})


@dataclass(frozen=True)
class Finding:
    """One health problem: its kind (stable while it lasts) and, in words, what it is now."""

    kind: str
    text: str


def findings(health: GpuHealth | None, limits: GpuLimits | None, busy: bool) -> list[Finding]:
    """Return the health problems one reading shows; [] when healthy or unknown.

    busy: the GPU works hard (is_busy), which judges the link generation.
    """
    if health is None:
        return []
    found = []
    limiting = limiting_reasons(health.clocks_event_reasons)
    if limiting:
        found.append(Finding("throttled", "throttled: " + ", ".join(limiting)))
    if health.remap_failure:
        found.append(Finding("remap_failure", "row remapping failed"))
    if health.remap_pending:
        found.append(Finding("remap_pending", _pending_text(health.remapped_rows_uncorrectable)))
    if health.retired_pages_pending:
        found.append(Finding("retirement_pending", "pages pending retirement"))
    if health.ecc_uncorrected_volatile:
        text = _count(health.ecc_uncorrected_volatile, "uncorrected ECC error")
        found.append(Finding("ecc_uncorrected", text + " since the driver loaded"))
    if limits is not None and link_downgraded(health, limits, busy):
        found.append(Finding("pcie_link", link_text(health, limits)))
    links, active = (None if limits is None else limits.nvlink_links), health.nvlink_links_active
    if links and active is not None and active < links:
        found.append(Finding("nvlink_down", f"NVLink: {active} of {links} links up"))
    return found


def reading_findings(reading: GpuReading) -> list[Finding]:
    """Return the health problems of one reading, its link judged by its own utilization."""
    return findings(reading.health, reading.limits, is_busy(reading.util_gpu_pct))


def _pending_text(rows: int | None) -> str:
    rows_text = "rows" if rows is None else _count(rows, "row")
    return f"{rows_text} pending remap (a GPU reset applies it)"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _below(value: int | None, maximum: int | None) -> bool:
    return value is not None and maximum is not None and 0 < value < maximum


def _or_unknown(value: int | None) -> str:
    return "?" if value is None else str(value)
