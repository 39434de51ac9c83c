"""One docker build per distinct build context, side by side, and the checks run in them."""

import itertools
import os
import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from combinations import Combination
from compose_check import compose_up_and_predict
from docker_host import IMAGE_PREFIX, DockerHost, build, context_digest, sh
from smoke import serves_the_sample_remembered

# The build cache no image uses (a full run's images hold about 50 GB, shared layers once):
# what older renders built, beyond this, goes. A template change that touches every ML
# layer would otherwise leave gigabytes of them, and the disk must hold the new set too.
CACHE_KEEP = "5GB"


class Builds:
    """One docker build per distinct build context; every combination maps to one.

    Answers that change nothing in the context (the container registry, say, whose
    files .dockerignore keeps out) give the same image: the digest proves it. Builds run
    one per core (BuildKit shares the layers two builds have in common), and so do the
    checks inside the images, queued behind them: the generated suite's test stage where
    the plan runs it, the smoke check elsewhere (tests/plan.py).
    """

    def __init__(self, host: DockerHost, render, log_dir: Path, say) -> None:
        self.host, self._render, self._log_dir, self._say = host, render, log_dir, say
        self.keys: dict[str, str] = {}
        self.members: dict[str, list[Combination]] = {}
        self.built: dict[str, Combination] = {}  # the combination each context renders
        self.notes: dict[str, str] = {}
        self.args: dict[str, dict[str, str]] = {}
        self.seconds: dict[str, float] = {}
        self.test_seconds: dict[str, float] = {}
        self.smoke_seconds: dict[str, float] = {}
        self.smokes_remembered: set[str] = set()
        self._failures: dict[str, str] = {}
        self._builds: dict[str, Future] = {}
        self._tests: dict[str, Future] = {}
        self._smokes: dict[str, Future] = {}
        self._composes: dict[str, Future] = {}  # by combination: compose runs the render
        self._pool = ThreadPoolExecutor(os.cpu_count() or 1)
        self._news: queue.SimpleQueue[str] = queue.SimpleQueue()  # said by the main thread

    def plan(self, combinations: list[Combination]) -> None:
        for c in combinations:
            built, instead = self.host.built_as(c)
            args, note = self.host.build_args(built)
            key = context_digest(self._render(built), args)[:16]
            self.keys[c.id] = key
            self.members.setdefault(key, []).append(c)
            self.built[key] = built
            self.args[key] = args
            if instead or note:
                self.notes[c.id] = "; ".join(filter(None, [instead, note]))

    def _tell(self) -> None:
        while not self._news.empty():
            self._say(self._news.get())

    def start(self) -> None:
        """Every planned build, side by side; the checks in the images wait for them.

        One context of each ML layer first, then a second of each, and so on: two builds
        side by side then rarely wait for the same ML layer (a GPU one downloads gigabytes)
        while the other could build on a layer already there.
        """
        if self._builds:
            return
        layers: dict[tuple, list[str]] = {}
        for key, c in self.built.items():
            layers.setdefault((c.python_version, c.ml_framework, c.gpu), []).append(key)
        for round_ in itertools.zip_longest(*layers.values()):
            for key in filter(None, round_):
                self._builds[key] = self._pool.submit(self._build, key)

    def image(self, c: Combination) -> str:
        """The image of c's context, once built; every planned build starts on first call."""
        self.start()
        key = self.keys[c.id]
        try:
            self._wait(self._builds, key)
        except Exception:
            self._tell()
            raise AssertionError(self._failures[key]) from None
        return f"{IMAGE_PREFIX}:{key}"

    def _build(self, key: str) -> None:
        first = self.members[key][0]
        try:
            self.seconds[key] = build(
                self._render(self.built[key]), self.args[key], self._log_dir / f"{key}.log",
                *self.host.build_options, "--tag", f"{IMAGE_PREFIX}:{key}",
            )  # fmt: skip
        except Exception as error:
            self._failures[key] = f"{first.id} (context {key}): {error}"
            self._news.put(f"docker build FAILED: {first.id} (context {key})")
            raise
        done = len(self.seconds) + len(self._failures)
        self._news.put(
            f"docker build {done}/{len(self.members)}: {first.id} "
            f"(context {key}) in {self.seconds[key]:.0f}s"
        )

    def _wait(self, jobs: dict[str, Future], key: str) -> object:
        """The job's result, telling the news of every job meanwhile."""
        while True:
            self._tell()
            try:
                return jobs[key].result(timeout=1)
            except TimeoutError:
                continue

    def _built(self, key: str) -> str:
        """In a worker thread: the image of a context whose build was submitted."""
        if self._builds[key].exception():
            raise AssertionError(f"same context as a failed build: {self._failures[key]}")
        return f"{IMAGE_PREFIX}:{key}"

    def _test_stage(self, key: str) -> float:
        self._built(key)
        log = self._log_dir / f"{key}-test.log"
        options = ("--target", "test", "--tag", f"{IMAGE_PREFIX}:{key}-test")
        return build(
            self._render(self.built[key]), self.args[key], log, *self.host.build_options, *options
        )

    def start_checks(
        self, suite: list[Combination], smoked: list[Combination], composed=()
    ) -> None:
        """Queue the checks with the images behind the builds, one per context: the test
        stage (the generated project's own suite) of each context of `suite`, the smoke
        check of each context of `smoked`; and `compose up` of each render of `composed`.
        Each starts once its image is built."""
        for c in suite:
            if (key := self.keys.get(c.id)) and key not in self._tests:
                self._tests[key] = self._pool.submit(self._test_stage, key)
        for c in smoked:
            if (key := self.keys.get(c.id)) and key not in self._smokes:
                self._smokes[key] = self._pool.submit(self._timed_smoke, key)
        for c in composed:
            if c.id in self.keys and c.id not in self._composes:
                self._composes[c.id] = self._pool.submit(self._compose, c)

    def run_tests(self, c: Combination) -> float:
        """The seconds c's test stage took: a short build on top of the image's cached
        layers, mostly a pytest run."""
        self.start()
        self.start_checks([c], [])
        key = self.keys[c.id]
        seconds = self._wait(self._tests, key)
        self.test_seconds[key] = seconds
        return seconds

    def smoke(self, c: Combination) -> tuple[int, object, list]:
        """What the smoke check of c's image found (tests/smoke.py)."""
        self.start()
        self.start_checks([], [c])
        return self._wait(self._smokes, self.keys[c.id])

    def compose(self, c: Combination) -> tuple[str, object, list[str]]:
        """What `compose up` of c's render found (tests/compose_check.py)."""
        self.start()
        self.start_checks([], [], [c])
        return self._wait(self._composes, c.id)

    def _compose(self, c: Combination) -> tuple[str, object, list[str]]:
        self._built(self.keys[c.id])  # the same context: compose's build hits its cache
        name = f"registry-{c.web_framework}-{c.model_registry}"
        return compose_up_and_predict(self._render(c), name, f"python:{c.python_version}-slim")

    def _timed_smoke(self, key: str) -> tuple[int, object, list]:
        image, c = self._built(key), self.built[key]
        started = time.monotonic()
        try:
            observed, remembered = serves_the_sample_remembered(
                image, c, self._render(c), self._log_dir.parent / "smoke-answers"
            )
        finally:
            self.smoke_seconds[key] = time.monotonic() - started
        if remembered:
            self.smokes_remembered.add(key)
        return observed

    @staticmethod
    def _tags() -> list[str]:
        """The tags of this suite's images: context keys, and key-test for test stages."""
        return sh("docker", "image", "ls", "--format", "{{.Tag}}", IMAGE_PREFIX).split()

    def unbuilt(self) -> list[str]:
        """The planned contexts with no image yet."""
        tags = set(self._tags())
        return [key for key in self.members if key not in tags]

    def prune_stale(self) -> list[str]:
        """Remove this suite's images of contexts no longer planned: old renders' leftovers.

        Best effort: an image that a leftover container still uses stays.
        """
        tags = self._tags()
        stale = [f"{IMAGE_PREFIX}:{t}" for t in tags if t.removesuffix("-test") not in self.members]
        for chunk in range(0, len(stale), 100):
            sh("docker", "image", "rm", *stale[chunk : chunk + 100], timeout=600, check=False)
        left = self._tags()
        return [image for image in stale if image.partition(":")[2] not in left]

    def bound_build_cache(self) -> str:
        """Keep the build cache under CACHE_KEEP, the least recently used dropped first.

        A full run uses the cache of every planned context, so what goes is what older
        renders built. (`--filter until=` judges by creation, and would drop the ML
        layers every rerun reuses.) Returns what Docker holds afterwards.
        """
        sh("docker", "builder", "prune", "--force", "--keep-storage", CACHE_KEEP, timeout=600)
        return sh("docker", "system", "df", "--format", "{{.Type}}: {{.Size}}").replace("\n", "; ")

    @staticmethod
    def _failed(job: Future | None) -> bool:
        return bool(job and job.done() and not job.cancelled() and job.exception())

    def close(self) -> None:
        self._tell()
        self._pool.shutdown(cancel_futures=True)

    def report(self) -> dict:
        return {
            "combinations": len(self.keys),
            "distinct_contexts": len(self.members),
            "built": len(self.seconds),
            "failed": sorted(self._failures.values()),
            "build_seconds": round(sum(self.seconds.values())),
            "test_stages_passed": len(self.test_seconds),
            "test_stage_seconds": round(sum(self.test_seconds.values())),
            "test_stages_failed": [
                self.members[key][0].id for key, job in self._tests.items() if self._failed(job)
            ],
            "smoke_checked": len(self.smoke_seconds),
            "smoke_seconds": round(sum(self.smoke_seconds.values())),
            "smoke_answers_remembered": len(self.smokes_remembered),
            "smokes_failed": [
                self.members[key][0].id for key, job in self._smokes.items() if self._failed(job)
            ],
            "contexts": {
                key: {
                    "combinations": [c.id for c in members],
                    "build_args": self.args[key],
                    "generated_suite": key in self._tests,
                    "smoke_checked": key in self._smokes,
                }
                for key, members in self.members.items()
            },
            "substitutions": self.notes,
        }
