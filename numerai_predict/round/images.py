"""--use-images: each model in its environment's image, as Numerai runs it."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess

from numerai_predict import numerai
from numerai_predict.round.outcomes import Job

log = logging.getLogger("numerai_predict.round")


CONTAINER_ROOM = 512 << 20  # --use-images: the container's memory beyond --max-memory (the runner's own)


IMAGES_SEEN: set[str] = set()


def image_of(environment: str) -> str:
    """The local image of a pixi environment (what `pixi run build-image ENV` tags)."""
    return f"{numerai.image_name(numerai.python_of_environment(environment))}:latest"


def image_problem(environment: str) -> str | None:
    """Why ``environment``'s image cannot run on this machine (or node), or None; a present image is remembered."""
    image = image_of(environment)
    if image in IMAGES_SEEN:
        return None
    try:
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    except OSError as exc:
        return f"docker cannot run here: {exc.strerror or exc}"
    if not found:
        return f"image {image} is not on this machine (pixi run build-image {environment})"
    IMAGES_SEEN.add(image)
    return None


def container_name(job: Job) -> str:
    """The same for every attempt at this model in this round folder, so a retry can remove the
    container an earlier, lost worker left running."""
    return f"numerai-round-{job.id}-{hashlib.sha256(job.folder.encode()).hexdigest()[:10]}"


def remove_container(job: Job) -> None:
    with contextlib.suppress(OSError):
        subprocess.run(["docker", "rm", "-f", container_name(job)], capture_output=True, check=False)
