#!/usr/bin/env bash
# Prints the path of Debian's OCI registry (docker-registry, "distribution" 2.8), installing
# the package first if it is missing. The package's service is never started: the suite
# runs its own registry on a loopback port (tests/servers/oci.py).
set -euo pipefail
if ! command -v docker-registry >/dev/null; then
  echo "oci-registry: installing docker-registry with apt" >&2
  apt-get update -qq
  # policy-rc.d: the package's own service stays off on a machine that runs services.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.oci && chmod +x /usr/sbin/policy-rc.d.oci
  [ -e /usr/sbin/policy-rc.d ] || ln -s policy-rc.d.oci /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
    apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
  [ "$(readlink /usr/sbin/policy-rc.d 2>/dev/null)" = policy-rc.d.oci ] && rm /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.oci
fi
command -v docker-registry
