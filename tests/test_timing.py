"""benchmarks/timing.py's GPU branch, run on the CPU with a stand-in for torch.cuda's clock: the order of what it
queues (the host queued ahead, then the events around the call) and that the median is of the events' times."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import timing  # noqa: E402


class _Clock:
    """Stands in for the CUDA stream: records what is queued, and gives each event pair a made-up elapsed time."""

    def __init__(self):
        self.queued, self.pairs = [], 0

    def event(self, enable_timing=False):
        clock = self

        class Event:
            def record(self):
                clock.queued.append("event")

            def synchronize(self):
                pass

            def elapsed_time(self, end):
                clock.pairs += 1
                return float(clock.pairs)  # ms: 1, 2, 3, ...

        return Event()


def test_a_gpu_timing_queues_the_host_ahead_of_each_timed_call(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(torch.cuda, "Event", clock.event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: type("P", (), {"clock_rate": 1_980_000})())
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: clock.queued.append(("sleep", cycles)))
    seconds = timing.median_seconds(lambda: clock.queued.append("call"), on_cuda=True, warmup=1, repeats=3)
    # warm-up, then per repeat: ~1 ms of GPU sleep (1.98 GHz), the start event, the call, the end event
    assert clock.queued == ["call"] + [("sleep", 1_980_000), "event", "call", "event"] * 3
    assert seconds == 2e-3  # the median of 1, 2 and 3 ms
