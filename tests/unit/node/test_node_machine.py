"""Machine facts: parsing /proc and /etc text, capacity, allocatable and pressure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from timoner.node.machine import (
    Machine,
    Thresholds,
    Usage,
    allocatable,
    capacity,
    go_arch,
    parse_meminfo,
    parse_os_release,
    pressure,
    read_machine,
    sample_usage,
)

MEMINFO = """\
MemTotal:       16318440 kB
MemFree:         1234560 kB
MemAvailable:    8765432 kB
Buffers:          345678 kB
Cached:          4567890 kB
SwapCached:            0 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""

OLD_KERNEL_MEMINFO = """\
MemTotal:        2048 kB
MemFree:          512 kB
Buffers:          128 kB
Cached:           256 kB
"""

MI = 1024 * 1024
GI = 1024 * MI


def machine(**overrides) -> Machine:
    values = dict(hostname="h", cpus=4, memory_bytes=8 * GI, storage_bytes=100 * GI, kernel_version="6.1.0",
                  os_image="Debian GNU/Linux 12 (bookworm)", operating_system="linux", architecture="amd64",
                  boot_id="b", machine_id="m", system_uuid="")
    values.update(overrides)
    return Machine(**values)


def test_parse_meminfo_reads_total_and_available_in_bytes():
    info = parse_meminfo(MEMINFO)
    assert info.total == 16318440 * 1024
    assert info.available == 8765432 * 1024


def test_parse_meminfo_estimates_available_on_old_kernels():
    assert parse_meminfo(OLD_KERNEL_MEMINFO).available == (512 + 128 + 256) * 1024


def test_parse_meminfo_without_total_is_an_error():
    with pytest.raises(ValueError):
        parse_meminfo("MemFree: 1 kB\n")


@pytest.mark.parametrize(("text", "image"), [
    ('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
     "Debian GNU/Linux 12 (bookworm)"),
    ("# comment\nPRETTY_NAME='Alpine Linux v3.20'\n", "Alpine Linux v3.20"),
    ("NAME=Fedora\n", "Fedora"),
    ('PRETTY_NAME="Say \\"hi\\""\n', 'Say "hi"'),
    ("", "Linux"),
])
def test_parse_os_release(text, image):
    assert parse_os_release(text) == image


@pytest.mark.parametrize(("uname", "goarch"), [
    ("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "arm"), ("i686", "386"), ("mips", "mips")])
def test_go_arch(uname, goarch):
    assert go_arch(uname) == goarch


def test_capacity_formats_as_upstream():
    assert capacity(machine()) == {"cpu": "4", "memory": "8388608Ki", "ephemeral-storage": "104857600Ki",
                                   "pods": "110"}


def test_allocatable_subtracts_the_documented_reservations():
    alloc = allocatable(machine(), max_pods=50)
    assert alloc["cpu"] == "3900m"
    assert alloc["memory"] == f"{(8 * GI - 100 * MI) // 1024}Ki"
    assert alloc["ephemeral-storage"] == str(int(100 * GI * 0.9))
    assert alloc["pods"] == "50"


def test_allocatable_never_goes_negative():
    alloc = allocatable(machine(cpus=0, memory_bytes=10 * MI, storage_bytes=0))
    assert alloc["cpu"] == "0" and alloc["memory"] == "0Ki" and alloc["ephemeral-storage"] == "0"


def usage(**overrides) -> Usage:
    values = dict(memory_available=4 * GI, storage_available=50 * GI, storage_capacity=100 * GI,
                  processes=300, pid_max=32768)
    values.update(overrides)
    return Usage(**values)


@pytest.mark.parametrize(("sample", "expected"), [
    (usage(), (False, False, False)),
    (usage(memory_available=100 * MI - 1), (True, False, False)),
    (usage(memory_available=100 * MI), (False, False, False)),
    (usage(storage_available=10 * GI - 1), (False, True, False)),
    (usage(storage_available=10 * GI), (False, False, False)),
    (usage(processes=32768 - 3276), (False, False, True)),
    (usage(processes=32768 - 3277), (False, False, False)),
])
def test_pressure_uses_upstream_eviction_thresholds(sample, expected):
    under = pressure(sample)
    assert (under.memory, under.disk, under.pid) == expected


def test_pressure_thresholds_are_configurable():
    assert pressure(usage(memory_available=GI), Thresholds(memory_available_bytes=2 * GI)).memory


def test_read_machine_reads_this_machine(tmp_path):
    facts = read_machine(tmp_path)
    assert facts.cpus == os.cpu_count()
    assert facts.memory_bytes == parse_meminfo(Path("/proc/meminfo").read_text()).total
    assert facts.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    stat = os.statvfs(tmp_path)
    assert facts.storage_bytes == stat.f_blocks * stat.f_frsize
    assert facts.operating_system == "linux"
    sample = sample_usage(tmp_path)
    assert 0 < sample.memory_available <= facts.memory_bytes
    assert 0 < sample.processes < sample.pid_max
