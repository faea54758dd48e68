"""Frames built from a pre-encoded head and tail equal encoding the whole chunk."""

from __future__ import annotations

from foxmock.streaming import ChunkBuilder, sse


def test_precomputed_frames_equal_encoding_the_whole_chunk() -> None:
    for include_usage in (False, True):
        build = ChunkBuilder('cmpl_"x"', 7, "módel", include_usage)
        for delta, finish in [
            ({"role": "assistant", "content": ""}, None),
            ({}, "stop"),
            ({"content": 'é "q"\n'}, None),
        ]:
            assert build.frame(1, delta, finish) == sse(build.choice(1, delta, finish))
