"""What a card says of a GPU's health, from its reading: each finding against text written here."""

from __future__ import annotations

import pytest

from common.health import CLOCK_EVENT_REASONS, findings, is_busy, reason_flags, xid_text
from common.messages import GpuHealth, GpuLimits

LIMITS = GpuLimits(pcie_max_gen=4, pcie_max_width=16, nvlink_links=12)
HEALTHY = GpuHealth(
    clocks_event_reasons=0,
    ecc_uncorrected_volatile=0,
    remap_pending=False,
    remap_failure=False,
    pcie_link_gen=4,
    pcie_link_width=16,
    nvlink_links_active=12,
)


def texts(health: GpuHealth | None, limits: GpuLimits | None = LIMITS, busy: bool = True):
    return [finding.text for finding in findings(health, limits, busy)]


def test_a_healthy_gpu_and_an_unknown_one_have_no_finding():
    assert texts(HEALTHY) == []
    assert texts(None) == []
    assert texts(GpuHealth()) == []  # every field unknown: nothing is claimed


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (0x40, ["throttled: HW thermal"]),
        (0x20 | 0x40, ["throttled: SW thermal, HW thermal"]),
        (0x8 | 0x80, ["throttled: HW slowdown, HW power brake"]),
        (0x4 | 0x40, ["throttled: HW thermal"]),
        (0x4, []),  # at its power limit: how a GPU runs flat out
        (0x1, []),  # idle: the GPU's own choice
        (0x2 | 0x10, []),  # clocks an application set, sync boost
    ],
)
def test_only_heat_or_a_hardware_signal_holding_the_clocks_down_is_a_finding(mask, expected):
    health = GpuHealth(clocks_event_reasons=mask)
    assert texts(health) == expected


def test_every_reason_bit_has_its_own_flag():
    flags = reason_flags(0x1 | 0x40)
    assert flags == {
        "gpu_idle": True,
        "applications_clocks": False,
        "sw_power_cap": False,
        "hw_slowdown": False,
        "sync_boost": False,
        "sw_thermal": False,
        "hw_thermal": True,
        "hw_power_brake": False,
    }
    assert reason_flags(None) is None
    assert len({reason.bit for reason in CLOCK_EVENT_REASONS}) == 8


def test_rows_pending_remap_and_uncorrected_errors_are_said_with_their_counts():
    health = GpuHealth(
        remap_pending=True, remapped_rows_uncorrectable=2, ecc_uncorrected_volatile=2
    )
    assert texts(health) == [
        "2 rows pending remap (a GPU reset applies it)",
        "2 uncorrected ECC errors since the driver loaded",
    ]
    one = GpuHealth(remap_pending=True, remapped_rows_uncorrectable=1)
    assert texts(one) == ["1 row pending remap (a GPU reset applies it)"]
    assert texts(GpuHealth(remap_failure=True)) == ["row remapping failed"]
    assert texts(GpuHealth(retired_pages_pending=True)) == ["pages pending retirement"]


def test_a_narrow_link_is_a_finding_busy_or_idle():
    health = GpuHealth(pcie_link_gen=4, pcie_link_width=8)
    assert texts(health, busy=True) == ["PCIe Gen4 x8 (max Gen4 x16)"]
    assert texts(health, busy=False) == ["PCIe Gen4 x8 (max Gen4 x16)"]


def test_a_slow_link_is_a_finding_only_while_the_gpu_works():
    # An idle GPU drops its link to Gen1 to save power: that is not a fault.
    health = GpuHealth(pcie_link_gen=1, pcie_link_width=16)
    assert texts(health, busy=False) == []
    assert texts(health, busy=True) == ["PCIe Gen1 x16 (max Gen4 x16)"]


def test_a_link_without_its_maximum_known_is_not_judged():
    health = GpuHealth(pcie_link_gen=1, pcie_link_width=8)
    assert texts(health, limits=None) == []
    assert texts(health, limits=GpuLimits()) == []


def test_nvlink_links_down_are_counted():
    assert texts(GpuHealth(nvlink_links_active=10)) == ["NVLink: 10 of 12 links up"]
    assert texts(GpuHealth(nvlink_links_active=12)) == []
    assert texts(GpuHealth(nvlink_links_active=0), limits=GpuLimits()) == []


def test_an_xid_is_named_from_the_table_or_by_its_number():
    assert xid_text(79) == "XID 79 (GPU fell off the bus)"
    assert xid_text(48) == "XID 48 (double-bit ECC error)"
    assert xid_text(4242) == "XID 4242"


def test_a_gpu_is_held_to_its_full_link_generation_from_half_utilization():
    assert not is_busy(None) and not is_busy(0) and not is_busy(49)
    assert is_busy(50) and is_busy(100)
