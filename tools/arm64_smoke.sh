#!/usr/bin/env bash
# The generated CI's arm64 smoke check, here: QEMU runs a linux/arm64 image on this amd64
# machine, as docker/setup-qemu-action does on a GitHub runner before the push tags it.
#
#   sudo bash tools/arm64_smoke.sh [OUT_DIR]     # minutes: everything arm64 is emulated
#
# Installs Debian's qemu-user-static, registers it with binfmt_misc (the F flag: the
# interpreter is opened now, so it also runs inside containers), builds an arm64 stand-in
# for python:3.13-slim from Debian trixie (whose python3 is 3.13; no registry is reached
# from here), renders the default answers for Python 3.13, builds the runtime image for
# linux/arm64, starts it read-only as the workflow does and posts the example request.
# Timings and the answer go to OUT_DIR (default build/arm64-smoke). The engine is the
# suite's: bash tests/infra/docker-engine.sh start.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/arm64-smoke}
mkdir -p "$out"
out=$(cd "$out" && pwd)
base=ml-docker-template/arm64-stand-in:python3.13-trixie
cache=/var/cache/ml-docker-template
started=$SECONDS
stamp() { echo "$(( SECONDS - started ))s $*" | tee -a "$out/timings.txt"; }

if ! command -v qemu-aarch64-static >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap >/dev/null
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64
stamp "qemu-aarch64 registered: $(qemu-aarch64-static --version | head -1)"

if ! docker image inspect "$base" >/dev/null 2>&1; then
  tar="$cache/arm64-trixie-python3.tar"
  if [ ! -f "$tar" ]; then
    root=$(mktemp -d "$cache/arm64-root.XXXXXX")
    debootstrap --arch=arm64 --variant=minbase \
      --include=python3,python3-venv,ca-certificates,netbase,tzdata,passwd \
      trixie "$root" http://deb.debian.org/debian > "$out/debootstrap.log" 2>&1
    chroot "$root" python3 -m venv /usr/local  # python and pip at /usr/local/bin, as the image
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root/etc/hostname"
    : > "$root/etc/resolv.conf"
    tar -C "$root" -cf "$tar" .
    rm -rf "$root"
  fi
  # An image of the rootfs made for arm64 (docker import leaves the engine's own architecture).
  context=$(mktemp -d "$cache/arm64-context.XXXXXX")
  ln "$tar" "$context/rootfs.tar"
  printf '%s\n' 'FROM scratch' 'ADD rootfs.tar /' \
    'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' 'CMD ["python3"]' > "$context/Dockerfile"
  docker build --quiet --platform linux/arm64 --tag "$base" "$context" > /dev/null
  rm -rf "$context"
  stamp "arm64 base: $(docker run --rm --platform linux/arm64 "$base" sh -c 'uname -m; python --version' | paste -sd' ')"
fi

project=$(mktemp -d)/arm64-service
trap 'docker rm -f arm64-under-test >/dev/null 2>&1 || true; rm -rf "$(dirname "$project")"' EXIT
.venv/bin/copier copy --defaults --vcs-ref HEAD --quiet --data python_version=3.13 . "$project"
docker build --platform linux/arm64 --target runtime --build-arg PYTHON_IMAGE="$base" \
  --tag arm64-under-test "$project" > "$out/build.log" 2>&1
stamp "built linux/arm64 runtime: $(docker image inspect -f '{{.Architecture}} {{.Size}}' arm64-under-test)"

docker run --detach --name arm64-under-test --platform linux/arm64 --read-only --tmpfs /tmp \
  --publish 127.0.0.1:8001:8000 arm64-under-test > /dev/null
for _ in $(seq 600); do
  curl --silent --fail --output /dev/null http://127.0.0.1:8001/readyz && break
  sleep 1
done
stamp "ready"
curl --silent --show-error --fail http://127.0.0.1:8001/predict \
  --header 'Content-Type: application/json' \
  --data @"$project/model/example-request.json" --output "$out/answer.json"
curl --silent http://127.0.0.1:8001/metadata > "$out/metadata.json"
stamp "answered: $(cat "$out/answer.json")"
docker exec arm64-under-test uname -m > "$out/uname.txt"
docker stop arm64-under-test > /dev/null
stamp "stopped, exit code $(docker wait arm64-under-test)"
docker logs arm64-under-test > "$out/service.log" 2>&1
docker rm arm64-under-test > /dev/null
docker image rm arm64-under-test > /dev/null
