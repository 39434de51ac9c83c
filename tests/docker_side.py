"""The Docker side of a run, started with the session in a thread of its own.

Setting up the engine and base images, then building every planned context, takes most of
a cold run, and needs neither core for much of it (downloads, debootstrap, layer exports).
The checks inside the images are queued behind the builds, so on a warm machine, where
the builds take a minute, they run while the stages that need no Docker (questionnaire,
render, update, Renovate) do, in the main thread. A test that needs an image, or a check's
result, waits for it.
"""

import threading
import time

import disk
from combinations import Combination
from docker_host import DockerHost
from image_builds import Builds


class DockerSide:
    def __init__(self, host: DockerHost) -> None:
        self.host = host
        self.builds: Builds | None = None
        self._selected: list[Combination] = []
        self._in_image: dict[str, list[Combination]] = {}
        self._full_matrix = False
        self.pruned: list[str] | None = None  # images of contexts no longer planned, removed
        self.seconds: dict[str, float] = {}  # what the thread did, and when it was done
        self._planned = threading.Event()
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="docker-side", daemon=True)
        self._thread.start()

    def plan(
        self, builds: Builds, selected: list[Combination], in_image: dict, full_matrix: bool
    ) -> None:
        """Once the renders are in: the builds of `selected` start as soon as the engine is
        up, and behind them the checks with the images (`in_image`: "suite", "smoke" and
        "compose", each a list of combinations), without waiting for their tests' turn.
        With the `full_matrix` planned, what older renders left goes first (see _run)."""
        self.builds, self._selected, self._in_image = builds, selected, in_image
        self._full_matrix = full_matrix
        self._planned.set()

    def _run(self) -> None:
        try:
            self.host.start()
            self.seconds["docker engine, base images"] = time.monotonic() - self._started
            self._planned.wait()
            if self.builds is None:  # the session ended first
                return
            self.builds.plan(self._selected)
            if self._full_matrix:
                # Before the first build, not after: a template change makes every context
                # new, and the old images and their cache beside a full set of new ones
                # would need twice the disk.
                self.pruned = self.builds.prune_stale()
                self.builds.bound_build_cache()
                if why := disk.too_little_for(len(self.builds.unbuilt()), len(self.builds.members)):
                    raise RuntimeError(why)
            self.builds.start()
            self.builds.start_checks(
                self._in_image.get("suite", []),
                self._in_image.get("smoke", []),
                self._in_image.get("compose", []),
            )
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
