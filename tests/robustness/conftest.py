"""Settings for the robustness suite: bounded Hypothesis runs in CI, longer ones on request.

``FOXMOCK_FUZZ_EXAMPLES`` sets how many examples each property test tries (default 200, the CI
run); ``FOXMOCK_FUZZ_EXAMPLES=20000 pytest tests/robustness`` is the documented long run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("FOXMOCK_FUZZ_EXAMPLES", "200"))

settings.register_profile(
    "foxmock",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # a loaded CI machine must not turn a slow example into a failure
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=os.environ.get("FOXMOCK_FUZZ_RANDOM") != "1",
    print_blob=True,
)
settings.load_profile("foxmock")
