"""``foxmock serve --workers N``: processes share one port and stop together."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai


def _children(parent: int) -> list[int]:
    """Live child processes of ``parent``, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def test_workers_share_the_port_and_stop_together() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "foxmock", "serve", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = None
        for line in process.stdout:
            found = re.search(r"serving on (http://\S+/v1)", line)
            if found:
                base_url = found.group(1)
                break
        assert base_url, "no worker became ready"
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        for i in range(40):  # fresh connections, so the kernel spreads them over the workers
            reply = client.with_options(timeout=5).chat.completions.create(
                model="foxora-1", messages=[{"role": "user", "content": f"n{i}"}]
            )
            assert reply.choices[0].message.content == f"You said: n{i}"
        assert len(_children(process.pid)) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    assert _children(process.pid) == []


def test_a_killed_worker_is_replaced_and_the_parent_says_why() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "foxmock", "serve", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = None
        for line in process.stdout:
            found = re.search(r"serving on (http://\S+/v1)", line)
            if found:
                base_url = found.group(1)
                break
        assert base_url, "no worker became ready"
        deadline = time.monotonic() + 30
        while len(_children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = set(_children(process.pid))
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        said = ""
        for line in process.stdout:  # the parent reports the death and the replacement
            if "restarted as pid" in line:
                said = line
                break
        assert "SIGKILL" in said and f"pid {victim}" in said, said
        after = set(_children(process.pid))
        assert victim not in after and len(after) == 2
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        for i in range(20):
            reply = client.with_options(timeout=10).chat.completions.create(
                model="foxora-1", messages=[{"role": "user", "content": f"n{i}"}]
            )
            assert reply.choices[0].message.content == f"You said: n{i}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    assert _children(process.pid) == []


def test_restarts_per_slot_are_bounded_per_minute() -> None:
    from foxmock.server.run import RESTARTS_PER_MINUTE, describe_exit, may_restart

    starts: list[float] = []
    allowed = 0
    while may_restart(starts, 100.0):
        starts.append(100.0)
        allowed += 1
    assert allowed == RESTARTS_PER_MINUTE
    assert may_restart(starts, 161.0)  # a minute later the budget is back
    assert describe_exit(signal.SIGKILL) == "killed by signal SIGKILL"
    assert describe_exit(3 << 8) == "exited with code 3"
