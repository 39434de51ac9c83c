#!/usr/bin/env bash
# Make a Docker engine with BuildKit, buildx and compose available, or stop the one
# this script started.
#
#   docker-engine.sh [start]   use the running engine if docker info, buildx and compose
#                              all work; otherwise install what is missing and start dockerd
#   docker-engine.sh stop      stop the dockerd this script started (no-op otherwise)
#
# Engine: Debian's docker.io from the system's apt sources (bookworm: 20.10, BuildKit
# 0.8). ML_DOCKER_TEMPLATE_ENGINE=trixie runs Debian trixie's dockerd 26.1 and containerd
# 1.7 instead (BuildKit 0.13: Dockerfile heredocs, COPY --link, RUN --network); their
# binaries run on bookworm's glibc, runc stays bookworm's.
# buildx 0.13 and compose 2.26 come from Debian trixie, fetched without touching the
# system's apt sources, into ${DOCKER_CONFIG:-~/.docker}/cli-plugins.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

PIDFILE=/run/ml-docker-template-dockerd.pid
LOG=/var/log/ml-docker-template-dockerd.log
CACHE=${ML_DOCKER_TEMPLATE_CACHE:-/var/cache/ml-docker-template}
ENGINE=${ML_DOCKER_TEMPLATE_ENGINE:-bookworm}
PLUGINS=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
TRIXIE_BIN=$CACHE/engine-trixie/bin

log() { echo "docker-engine: $*" >&2; }


# apt-get download from Debian trixie with private lists and cache; debs land in $CACHE/debs.
trixie_download() {
  local d=$CACHE/trixie-apt
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$CACHE/debs"
  echo "deb $(debian_mirror) trixie main" > "$d/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" -qq update
  (cd "$CACHE/debs" && apt-get "${opts[@]}" -qq download "$@")
}

extract() {  # PACKAGE -> prints the directory it was unpacked into
  local deb dir=$CACHE/x/$1
  deb=$(ls "$CACHE/debs/$1"_*.deb | tail -n1)
  rm -rf "$dir" && mkdir -p "$dir" && dpkg-deb -x "$deb" "$dir" && echo "$dir"
}

install_plugins() {
  local missing=() p
  docker buildx version >/dev/null 2>&1 || missing+=(docker-buildx)
  docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
  [[ ${#missing[@]} -gt 0 ]] || return 0
  log "fetching ${missing[*]} from Debian trixie"
  trixie_download "${missing[@]}"
  mkdir -p "$PLUGINS"
  for p in "${missing[@]}"; do
    cp "$(extract "$p")/usr/libexec/docker/cli-plugins/$p" "$PLUGINS/"
  done
  rm -rf "$CACHE/x"
}

install_engine() {
  if ! command -v dockerd >/dev/null; then
    log "installing docker.io with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq docker.io >/dev/null
  fi
  if [[ $ENGINE == trixie && ! -x $TRIXIE_BIN/dockerd ]]; then
    log "fetching dockerd and containerd from Debian trixie"
    trixie_download docker.io containerd
    mkdir -p "$TRIXIE_BIN"
    cp "$(extract docker.io)"/usr/sbin/{dockerd,docker-proxy} "$TRIXIE_BIN/"
    cp "$(extract containerd)"/usr/bin/{containerd,containerd-shim-runc-v2} "$TRIXIE_BIN/"
    rm -rf "$CACHE/x"
  fi
}

our_dockerd() {  # prints the pid of the dockerd this script started, if it runs
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null || true) == dockerd ]] && echo "$pid"
  return 0
}

start_dockerd() {
  local path=$PATH data_root=/var/lib/docker pid
  if [[ $ENGINE == trixie ]]; then
    path=$TRIXIE_BIN:$PATH
    data_root=/var/lib/docker-trixie  # keeps 20.10's store intact when switching back
  fi
  # features.buildkit: a 20.10 daemon otherwise announces the legacy builder to clients.
  [[ -n $(our_dockerd) ]] || rm -f "$PIDFILE"  # stale: dockerd refuses to start over it
  mkdir -p "$CACHE"
  echo '{"features": {"buildkit": true}}' > "$CACHE/daemon.json"
  # No other flags needed here: overlay2, iptables (nf_tables) and the default bridge all
  # work in this VM, so -p 127.0.0.1:H:C and --network host behave as on a normal host.
  PATH=$path setsid dockerd --config-file "$CACHE/daemon.json" --data-root "$data_root" \
    --pidfile "$PIDFILE" >>"$LOG" 2>&1 </dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  pid=$(our_dockerd)
  if [[ -z $pid ]] || ! docker info >/dev/null 2>&1; then
    log "dockerd did not come up within 60 s; last lines of $LOG:"
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  echo "docker: started dockerd pid $pid ($(docker version -f '{{.Server.Version}}'), log $LOG)"
}

start() {
  if docker info >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1 \
     && docker compose version >/dev/null 2>&1; then
    echo "docker: using the running engine"
    return
  fi
  install_plugins
  if docker info >/dev/null 2>&1; then
    echo "docker: using the running engine (added missing CLI plugins to $PLUGINS)"
    return
  fi
  install_engine
  start_dockerd
}

stop() {
  local pid
  pid=$(our_dockerd)
  if [[ -z $pid ]]; then
    echo "docker: no dockerd started by this script"
    return
  fi
  kill -TERM "$pid"
  for _ in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "dockerd pid $pid still running after 30 s"
    exit 1
  fi
  rm -f "$PIDFILE"
  echo "docker: stopped dockerd pid $pid"
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
