"""What every server in the benchmark is asked, and the scenario files that answer it.

Shared by `run.py`, `bare_app.py` and `stream_client.py`, so the three servers get byte-identical
requests and answer with the same shape: one templated ChatCompletion, or 50
``chat.completion.chunk`` events (a role delta, 48 content deltas, a finish delta) then
``data: [DONE]``.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL = "foxora-1"
SYSTEM = "You are a helpful assistant."
TARGET_TEXT = "benchmark question: say hello"  # the non-streaming request's last user message
STREAM_TEXT = "benchmark stream"  # unpaced stream
PACED_TEXT = "benchmark paced stream"  # paced stream, 20 ms between content chunks
CHUNK_DELAY_MS = 20
CONTENT_CHUNKS = [f"w{i:02d} " for i in range(48)]  # 48 content deltas (+ role + finish = 50)
CHUNK_CHARS = 4  # every content chunk is 4 characters (aimock cuts by characters)
STREAM_EVENTS = len(CONTENT_CHUNKS) + 2
# fillers that no index can skip (substring matchers); the same number at every scale, so the
# 10 vs 10,000 comparison measures how the cost grows with the indexable rest
UNINDEXABLE_FILLERS = 5


def chat_body(text: str, stream: bool = False) -> bytes:
    """The request body, compact JSON (identical for every server)."""
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": text},
        ],
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text)


def write_foxmock(directory: Path, total: int) -> Path:
    """Write ``total`` scenarios into ``directory``; exactly one matches each benchmark request.

    Order (= match order, all priority 0): ``UNINDEXABLE_FILLERS`` substring fillers, then
    exact-text fillers (model and last user message, alternating models), then the templated
    target, then the unpaced and the paced 50-chunk stream scenarios. The target comes after
    every filler, so a linear scan pays for all of them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fixed = 3  # target, stream, paced
    fillers = max(total - fixed, 0)
    lines = ["version: 1", f"models: [{MODEL}, foxora-1-mini]", "scenarios:"]
    for i in range(fillers):
        if i < UNINDEXABLE_FILLERS:
            lines += [
                f"  - name: filler-topic-{i}",
                "    match:",
                f"      last_user: {{contains: {_q(f'filler topic {i}')}, ignore_case: true}}",
                f"    respond: {{content: {_q(f'Topic answer {i}')}}}",
            ]
        else:
            model = MODEL if i % 2 else "foxora-1-mini"
            lines += [
                f"  - name: filler-{i}",
                "    match:",
                f"      model: {model}",
                f"      last_user: {_q(f'filler question {i}')}",
                f"    respond: {{content: {_q(f'Filler answer {i}')}}}",
            ]
    chunks = ", ".join(_q(c) for c in CONTENT_CHUNKS)
    lines += [
        "  - name: bench-target",
        "    match:",
        f"      model: {MODEL}",
        f"      last_user: {_q(TARGET_TEXT)}",
        "    respond:",
        '      content: "Hello {{ last_user }}"',
        "  - name: bench-stream",
        f"    match: {{last_user: {_q(STREAM_TEXT)}}}",
        "    respond: {}",
        f"    stream: {{chunks: [{chunks}]}}",
        "  - name: bench-paced",
        f"    match: {{last_user: {_q(PACED_TEXT)}}}",
        "    respond: {}",
        f"    stream: {{chunks: [{chunks}]}}",
        f"    latency: {{chunk_delay: {CHUNK_DELAY_MS}ms}}",
    ]
    path = directory / "bench.yaml"
    path.write_text("\n".join(lines) + "\n")
    return directory


def write_aimock(path: Path, total: int) -> Path:
    """The same set as an aimock fixture file (aimock has no templates: a fixed "Hello ..." answer).

    aimock's ``userMessage`` is a substring match; the filler texts are not substrings of the
    benchmark texts. Stream fixtures cut 192 characters into 4-character chunks: 48 deltas.
    """
    fixtures: list[dict[str, object]] = []
    for i in range(max(total - 3, 0)):
        text = f"filler topic {i}" if i < UNINDEXABLE_FILLERS else f"filler question {i}"
        fixtures.append({"match": {"userMessage": text}, "response": {"content": f"Answer {i}"}})
    content = "".join(CONTENT_CHUNKS)
    fixtures += [
        {
            "match": {"userMessage": TARGET_TEXT},
            "response": {"content": f"Hello {TARGET_TEXT}"},
        },
        {
            "match": {"userMessage": PACED_TEXT},
            "response": {"content": content},
            "chunkSize": CHUNK_CHARS,
            "latency": CHUNK_DELAY_MS,
        },
        {
            "match": {"userMessage": STREAM_TEXT},
            "response": {"content": content},
            "chunkSize": CHUNK_CHARS,
        },
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fixtures": fixtures}))
    return path


if __name__ == "__main__":  # write the sets somewhere to look at them: scenarios.py DIR
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench-scenarios")
    for n in (10, 1000, 10000):
        write_foxmock(out / f"foxmock-{n}", n)
        write_aimock(out / f"aimock-{n}.json", n)
    print(f"written to {out}/")
