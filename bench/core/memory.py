"""Where an engine's resident memory is: per process, from /proc/PID/smaps.

RSS alone says how much; this says of what: anonymous memory (weights, the KV cache, the
allocator's heap), the KV cache's own mapping, safetensors pages still mapped, shared libraries.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessMemory", "group_memory", "parse_smaps", "without_kv_cache"]

KiB = 1024
_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ [0-9a-f]+ \S+ \d+\s*(.*)$")
_FIELD = re.compile(r"^(\w+):\s+(\d+) kB$")
KV_SLACK = 64 << 20
"""An anonymous mapping whose size is within this much of the KV cache's size is the cache: the
kernel merges a mapping with its neighbours and an aligned allocation leaves its head to the one
before (vLLM's 1 GiB cache shows as a 1023.75 MiB mapping), and no other tensor is that large
in the engines measured here (the largest, the embedding and head, are 297 MiB at `small`)."""


@dataclass(frozen=True)
class ProcessMemory:
    """One process's resident bytes, split by what the pages belong to."""

    pid: int
    name: str
    rss: int
    pss: int
    anonymous: int
    """Private and shared anonymous pages: tensors, the heap, thread stacks."""
    kv_cache: int
    """Resident pages of the anonymous mapping(s) the size of the KV cache (0 if none is found)."""
    heap: int
    """The glibc main arena's `[heap]` (small allocations; large ones are mmap'd apart)."""
    safetensors: int
    """File pages of checkpoint shards still mapped."""
    libraries: int
    """File pages of shared objects (.so): torch, oneDNN, vLLM's kernels."""
    other_files: int


def _kind(path: str, size: int, kv_cache_bytes: int) -> str | None:
    """Which ProcessMemory field a mapping's resident pages go to (None: anonymous, not the cache)."""
    if path == "[heap]":
        return "heap"
    if path.endswith(".safetensors"):
        return "safetensors"
    if ".so" in Path(path).name:
        return "libraries"
    if path.startswith("/"):
        return "other_files"
    if kv_cache_bytes and abs(size - kv_cache_bytes) <= KV_SLACK:
        return "kv_cache"
    return None


def _mappings(text: str) -> list[tuple[str, dict[str, int]]]:
    """(path, {field: bytes}) per mapping of an smaps text."""
    mappings: list[tuple[str, dict[str, int]]] = []
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            mappings.append((header.group(1).strip(), {}))
            continue
        field = _FIELD.match(line)
        if field and mappings:
            mappings[-1][1][field.group(1)] = int(field.group(2)) * KiB
    return mappings


def parse_smaps(text: str, kv_cache_bytes: int = 0) -> dict[str, int]:
    """Sums of an smaps text's Rss/Pss/Anonymous, by kind (see ProcessMemory); bytes."""
    sums = dict.fromkeys(
        ("rss", "pss", "anonymous", "kv_cache", "heap", "safetensors", "libraries", "other_files"), 0
    )
    for path, fields in _mappings(text):
        rss, anon = fields.get("Rss", 0), fields.get("Anonymous", 0)
        sums["rss"] += rss
        sums["pss"] += fields.get("Pss", 0)
        sums["anonymous"] += anon
        kind = _kind(path, fields.get("Size", 0), kv_cache_bytes)
        if kind is not None:
            sums[kind] += rss - anon if kind == "other_files" else rss
    return sums


def group_memory(pgid: int, kv_cache_bytes: int = 0) -> list[ProcessMemory]:
    """Every live process of process group `pgid` (an engine's API server, engine core, workers)."""
    found: list[ProcessMemory] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) != pgid:
                continue
            smaps = Path(f"/proc/{entry}/smaps").read_text()
        except (OSError, ValueError):
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        found.append(ProcessMemory(pid=int(entry), name=name, **parse_smaps(smaps, kv_cache_bytes)))
    return sorted(found, key=lambda p: p.pid)


def without_kv_cache(processes: list[ProcessMemory]) -> int:
    """The group's RSS less the KV cache's resident pages: what the model and vLLM cost by themselves."""
    return sum(p.rss - p.kv_cache for p in processes)
