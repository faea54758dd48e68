"""``foxmock serve --workers N``: processes share one port and stop together."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
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
