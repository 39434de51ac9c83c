"""The Docker side of a run, started with the session in a thread of its own.

Setting up the engine and base images, then building every planned context, takes most of
a cold run, and needs neither core for much of it (downloads, debootstrap, layer exports).
The stages that need no Docker (questionnaire, render, update, Renovate) run meanwhile in
the main thread; the first test that needs an image waits for what it needs.
"""

import threading
import time

from combinations import Combination
from docker_host import DockerHost
from image_builds import Builds


class DockerSide:
    def __init__(self, host: DockerHost) -> None:
        self.host = host
        self.builds: Builds | None = None
        self._selected: list[Combination] = []
        self.seconds: dict[str, float] = {}  # what the thread did, and when it was done
        self._planned = threading.Event()
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="docker-side", daemon=True)
        self._thread.start()

    def plan(self, builds: Builds, selected: list[Combination]) -> None:
        """Once the renders are in: the builds of `selected` start as soon as the engine is up."""
        self.builds, self._selected = builds, selected
        self._planned.set()

    def _run(self) -> None:
        try:
            self.host.start()
            self.seconds["docker engine, base images"] = time.monotonic() - self._started
            self._planned.wait()
            if self.builds is None:  # the session ended first
                return
            self.builds.plan(self._selected)
            self.builds.start()
            self.seconds["builds planned and started"] = time.monotonic() - self._started
        except BaseException as error:  # raised again in the main thread, by ready()
            self._error = error

    def ready(self) -> Builds:
        """The builds, planned and started; raises what went wrong in the thread."""
        self._thread.join()
        if self._error:
            raise self._error
        return self.builds

    def stop(self) -> None:
        self._planned.set()  # a session cut short before planning: let the thread finish
        self._thread.join()
        if self.builds:
            self.builds.close()
        self.host.stop()
