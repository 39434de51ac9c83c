#!/usr/bin/env bash
# Ensure python:V-slim exists locally for each VERSION given (e.g. 3.11 3.12 3.13).
#
# Order: image already present -> docker pull -> labelled local stand-in:
#   - a Debian suite whose python3 is V (bookworm 3.11, trixie 3.13): debootstrap
#     minbase, venv at /usr/local so python/pip sit where the official image has them;
#   - otherwise a pyenv CPython V on this (Debian) host: debootstrap minbase of the
#     host's suite plus the shared libraries that interpreter links, interpreter
#     copied to /usr/local.
# Prints one line per version:  base-image python:V-slim real|stand-in|missing <detail>
# Rootfs tarballs are cached in $CACHE, so re-importing a removed stand-in is fast.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

CACHE=${ML_DOCKER_TEMPLATE_CACHE:-/var/cache/ml-docker-template}
PULL_TIMEOUT=${PULL_TIMEOUT:-120}
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
STAND_IN_LABEL=io.github.ml-docker-template.stand-in

log() { echo "base-images: $*" >&2; }


debian_suite_for() {
  case $1 in
    3.11) echo bookworm ;;
    3.13) echo trixie ;;
    3.14) echo sid ;;
  esac
}

pyenv_python_for() {  # newest $PYENV_ROOT/versions/V.N with a shared libpython
  local d
  d=$(ls -d "$PYENV_ROOT/versions/$1".[0-9]* 2>/dev/null | sort -V | tail -n1 || true)
  [[ -n $d && -x $d/bin/python$1 && -e $d/lib/libpython$1.so.1.0 ]] && echo "$d"
  return 0
}

need_debootstrap() {
  command -v debootstrap >/dev/null && return
  log "installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq debootstrap >/dev/null
}

# Make ROOT usable for builds here and shaped like the official image.
finish_root() {
  local root=$1
  # This host's extra CAs (e.g. a TLS-terminating egress proxy) must be trusted by
  # pip inside builds; installing them as local CAs survives update-ca-certificates.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
  fi
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  # Any pip (also one upgraded from PyPI, which ships certifi) uses the system bundle;
  # SSL_CERT_FILE/REQUESTS_CA_BUNDLE (set at import) do the same for uv, requests, httpx.
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$root/etc/pip.conf"
  # The mirror may serve a frozen snapshot: unstable's (sid's) Release files carry a
  # Valid-Until a week out, after which apt-get update inside a build would refuse them.
  echo 'Acquire::Check-Valid-Until "false";' > "$root/etc/apt/apt.conf.d/99stand-in-snapshot"
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/etc/hostname
  : > "$root/etc/resolv.conf"
}

bootstrap() {  # ROOT SUITE INCLUDE, logging next to the tarball being built ($tar)
  local root=$1 suite=$2 include=$3
  need_debootstrap
  log "debootstrap $suite (log: ${tar%.tar}.log)"
  debootstrap --variant=minbase --include="$include" "$suite" "$root" "$(debian_mirror)" \
    >"${tar%.tar}.log" 2>&1
}

build_debian_rootfs() {  # V SUITE TAR
  local v=$1 suite=$2 tar=$3 root
  root=$(mktemp -d "$CACHE/root.XXXXXX"); ROOT_TMP=$root
  bootstrap "$root" "$suite" python3,python3-venv,ca-certificates,netbase,tzdata
  chroot "$root" python3 -m venv /usr/local
  finish_root "$root"
  tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
  rm -rf "$root"
}

build_pyenv_rootfs() {  # V PYDIR SUITE TAR
  local v=$1 py=$2 suite=$3 tar=$4 root libs pkgs l
  # Debian packages providing the shared libraries this interpreter links (Tk left
  # out, as in the official slim image).
  libs=$(find "$py/bin/python$v" "$py/lib" -name "python$v" -o -name '*.so*' -type f \
           ! -name '*tkinter*' | { xargs ldd 2>/dev/null || true; } | awk '/=> \// {print $3}' | sort -u)
  pkgs=$(for l in $libs; do
           [[ $l == "$py"/* ]] && continue
           dpkg -S "$l" 2>/dev/null || dpkg -S "$(readlink -f "$l")"
         done | cut -d: -f1 | sort -u | paste -sd, -)
  root=$(mktemp -d "$CACHE/root.XXXXXX"); ROOT_TMP=$root
  bootstrap "$root" "$suite" "ca-certificates,netbase,tzdata,$pkgs"
  # Like the official image: no tests, no bytecode, no static lib, no Tk; pip anew.
  tar -C "$py" -c --exclude="lib/python$v/test" --exclude='__pycache__' \
      --exclude='*.a' --exclude='*tkinter*' --exclude=idlelib --exclude='site-packages/*' \
      --exclude='bin/pip*' --exclude='bin/idle*' . | tar -C "$root/usr/local" -x
  grep -rlI "$py" "$root/usr/local" | xargs -r sed -i "s#$py#/usr/local#g"
  chroot "$root" ldconfig
  if chroot "$root" sh -c 'ldd /usr/local/bin/python3 /usr/local/lib/python3*/lib-dynload/*.so' 2>&1 \
       | grep 'not found' >&2; then
    log "unresolved shared libraries in the $v stand-in"; return 1
  fi
  chroot "$root" /usr/local/bin/python3 -m ensurepip --default-pip >/dev/null
  chroot "$root" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, venv, lzma, bz2, zlib, readline, uuid'
  finish_root "$root"
  tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
  rm -rf "$root"
}

import_stand_in() {  # IMG V TAR DESCRIPTION
  local img=$1 v=$2 tar=$3 desc=$4 got
  docker import \
    -c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    -c "ENV PYTHON_VERSION=$5" \
    -c 'CMD ["python3"]' \
    -c "LABEL $STAND_IN_LABEL=true" \
    -c "LABEL org.opencontainers.image.description=\"$desc\"" \
    - "$img" <"$tar" >/dev/null
  # What a Dockerfile relies on: python/pip at /usr/local/bin, reporting V; useradd.
  got=$(docker run --rm --network none "$img" sh -c \
    'test -x /usr/local/bin/python && test -x /usr/local/bin/pip && command -v useradd groupadd >/dev/null && pip --version >/dev/null && python --version' 2>&1) || true
  if [[ $got != "Python $v."* ]]; then
    log "check of $img failed: $got"
    docker image rm -f "$img" >/dev/null
    return 1
  fi
}

ensure() {
  local v=$1 img="python:$1-slim" suite py desc full host_suite tar build
  if docker image inspect "$img" >/dev/null 2>&1; then
    if [[ $(docker image inspect -f "{{index .Config.Labels \"$STAND_IN_LABEL\"}}" "$img") == true ]]; then
      echo "base-image $img stand-in $(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.description"}}' "$img")"
    else
      echo "base-image $img real present"
    fi
    return
  fi
  if timeout "$PULL_TIMEOUT" docker pull -q "$img" >/dev/null 2>&1; then
    echo "base-image $img real pulled"; return
  fi
  mkdir -p "$CACHE"
  suite=$(debian_suite_for "$v")
  py=$(pyenv_python_for "$v")
  host_suite=$(. /etc/os-release 2>/dev/null; [[ ${ID:-} == debian ]] && echo "${VERSION_CODENAME:-}" || true)
  if [[ -n $suite ]]; then
    tar=$CACHE/python-$v-slim-$suite.tar
    build=(build_debian_rootfs "$v" "$suite" "$tar")
    desc="stand-in for python:$v-slim built from Debian $suite by debootstrap (no image could be pulled)"
  elif [[ -n $py && -n $host_suite ]]; then
    suite=$host_suite
    tar=$CACHE/python-$v-slim-pyenv-$(basename "$py")-$suite.tar
    build=(build_pyenv_rootfs "$v" "$py" "$suite" "$tar")
    desc="stand-in for python:$v-slim: Debian $suite minbase by debootstrap plus the host pyenv CPython $(basename "$py") in /usr/local (no image could be pulled)"
  else
    echo "base-image $img missing no pull, no Debian suite ships Python $v and no pyenv $v on this host; build the $v renders against another version's base"
    return
  fi
  if [[ ! -s $tar ]]; then
    # A subshell with its own errexit and cleanup, so one failed version does not stop
    # the others (errexit would be off inside a function called from a condition).
    set +e
    (ROOT_TMP=; trap 'rm -rf "${ROOT_TMP:-}" "$tar.tmp"' EXIT; set -e; "${build[@]}")
    local rc=$?
    set -e
    if [[ $rc -ne 0 ]]; then
      echo "base-image $img missing building the stand-in failed (see ${tar%.tar}.log); build the $v renders against another version's base"
      return
    fi
  fi
  full=$(tar -xOf "$tar" ./usr/local/pyvenv.cfg 2>/dev/null | awk -F' = ' '$1=="version"{print $2}' || true)
  [[ -n $full ]] || full=$(basename "${py:-$v}")
  if import_stand_in "$img" "$v" "$tar" "$desc" "$full"; then
    echo "base-image $img stand-in $desc"
  else
    echo "base-image $img missing stand-in failed its checks; build the $v renders against another version's base"
  fi
}

[[ $# -gt 0 ]] || { echo "usage: $0 VERSION..." >&2; exit 2; }
for v in "$@"; do ensure "$v"; done
