"""A real Docker daemon for the image tests: a locally made base image and the foxmock image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_TAG = "foxmock-test-base:bookworm"
IMAGE_TAG = "foxmock:test"
CA_DIR = Path("/usr/local/share/ca-certificates")


def docker(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def docker_problem() -> str | None:
    """Why Docker cannot be used here, or None when a daemon answers."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        result = docker("info", check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer"
    return None if result.returncode == 0 else f"no Docker daemon: {result.stderr.strip()[:200]}"


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def build_base_image(workdir: Path) -> str:
    """A Debian bookworm base with python3, made with debootstrap and ``docker import``.

    The host's extra CA certificates go into it so pip can reach the package index through
    this machine's network.
    """
    if image_exists(BASE_TAG):
        return BASE_TAG
    rootfs = workdir / "rootfs"
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    if CA_DIR.is_dir():
        target = rootfs / CA_DIR.relative_to("/")
        target.mkdir(parents=True, exist_ok=True)
        for cert in CA_DIR.glob("*.crt"):
            shutil.copy(cert, target / cert.name)
        subprocess.run(
            ["chroot", str(rootfs), "update-ca-certificates"], check=True, capture_output=True
        )
    # what a slim image leaves out: package caches and lists, documentation, translations
    for junk in (
        "var/cache/apt",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "usr/share/info",
    ):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    (rootfs / "etc" / "pip.conf").write_text(
        "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n", "utf-8"
    )
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["docker", "import", "-", BASE_TAG],
        stdin=tar.stdout,
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert tar.wait() == 0, "tar of the debootstrap tree failed"
    shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_TAG


def build_image(base: str) -> str:
    """Build the repository's Dockerfile on ``base`` (host network, as this machine needs)."""
    docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        IMAGE_TAG,
        str(ROOT),
        timeout=1200,
    )
    return IMAGE_TAG


def base_image(workdir: Path) -> str:
    """``FOXMOCK_DOCKER_BASE`` when set, else the locally made Debian base."""
    return os.environ.get("FOXMOCK_DOCKER_BASE") or build_base_image(workdir)
