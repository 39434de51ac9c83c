"""How the kubelet judges a pod's probes, with the generated deployment's settings
(k8s/base/deployment.yaml): the serve stage's overload test and bench/run.py both ask it."""

# timeoutSeconds, and the failureThreshold of consecutive failures after which the kubelet acts.
READINESS_PROBE = (2, 2)  # out of the Service's endpoints
LIVENESS_PROBE = (5, 3)  # restarted


def failed_in_a_row(seconds: list[float | None], timeout: float) -> int:
    """Most consecutive probes the kubelet counts as failed: at or over `timeout`, or not
    answered 200 (None)."""
    longest = current = 0
    for s in seconds:
        current = current + 1 if s is None or s >= timeout else 0
        longest = max(longest, current)
    return longest
