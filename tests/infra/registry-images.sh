#!/usr/bin/env bash
# Ensure the images a registry-mode compose.yaml names exist locally, for each TAG given.
#
# Order: image already present -> docker pull -> labelled local stand-in built from
# python:3.13-slim (itself a stand-in where it cannot be pulled) that speaks the same
# protocol on the same port:
#   motoserver/moto:*          moto's own server (the same software), port 5000
#   fsouza/fake-gcs-server:*   gcp-storage-emulator (the GCS JSON API), port 4443
#   ghcr.io/mlflow/mlflow:*    MLflow of that version from PyPI (`mlflow server`)
# Prints one line per tag:  registry-image TAG real|stand-in <detail>
set -euo pipefail

PULL_TIMEOUT=${PULL_TIMEOUT:-60}
STAND_IN_LABEL=io.github.ml-docker-template.stand-in

log() { echo "registry-images: $*" >&2; }

stand_in_dockerfile() {  # the Dockerfile of a stand-in for TAG, on stdout
  local tag=$1 version=${1##*:}
  echo "FROM python:3.13-slim"
  case $tag in
    motoserver/moto:*)
      echo "RUN pip install --no-cache-dir 'moto[server]==$version'"
      echo "EXPOSE 5000"
      echo 'ENTRYPOINT ["moto_server", "-H", "0.0.0.0", "-p", "5000"]' ;;
    fsouza/fake-gcs-server:*)
      echo "RUN pip install --no-cache-dir gcp-storage-emulator==2026.7.19"
      echo "EXPOSE 4443"
      # fake-gcs-server's flags (-scheme http -port 4443 ...) land in \$0.. and are ignored.
      echo 'ENTRYPOINT ["sh", "-c", "exec gcp-storage-emulator start -H 0.0.0.0 --port 4443 --in-memory", "fake-gcs-server"]' ;;
    ghcr.io/mlflow/mlflow:v*)
      echo "RUN pip install --no-cache-dir 'mlflow==${version#v}'"
      echo "EXPOSE 5000" ;;
    *) return 1 ;;
  esac
  echo "LABEL $STAND_IN_LABEL=\"stand-in for $tag: the same protocol on the same port\""
}

for tag in "$@"; do
  if docker image inspect "$tag" >/dev/null 2>&1; then
    kind=$(docker image inspect --format "{{index .Config.Labels \"$STAND_IN_LABEL\"}}" "$tag")
    echo "registry-image $tag ${kind:+stand-in }${kind:-real present}"
  elif timeout "$PULL_TIMEOUT" docker pull -q "$tag" >/dev/null 2>&1; then
    echo "registry-image $tag real pulled"
  else
    log "cannot pull $tag: building a stand-in"
    stand_in_dockerfile "$tag" | docker build --quiet --network host --tag "$tag" - >/dev/null
    echo "registry-image $tag stand-in $(docker image inspect --format "{{index .Config.Labels \"$STAND_IN_LABEL\"}}" "$tag")"
  fi
done
