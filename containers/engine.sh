#!/usr/bin/env bash
# The Docker engine around our image builds, for CI and the container tests (users with
# Docker installed and a registry in reach need none of this):
#   containers/engine.sh cli              print a docker client that builds with BuildKit
#   containers/engine.sh start [--install] make an engine answer: start dockerd (root),
#                                          apt-get install docker.io first with --install;
#                                          prints "started dockerd PID" when it started one
#   containers/engine.sh base [IMAGE]     make IMAGE (default python:3.11-slim) available:
#                                          present, pulled, or where no registry is
#                                          reachable a stand-in built from Debian with
#                                          debootstrap (containers/stand-in/Dockerfile).
#                                          The Dockerfiles do not change.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# Our Dockerfiles use BuildKit (RUN --mount=type=cache). Clients from Docker 23 on need the
# buildx plugin for it; older clients (Debian's docker.io 20.10) have it built in.
cli() {
  local candidate major
  for candidate in ${DOCKER:-} docker /usr/bin/docker; do
    command -v "$candidate" >/dev/null || continue
    if "$candidate" buildx version >/dev/null 2>&1; then echo "$candidate"; return; fi
    major="$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)"
    if [[ -n "$major" && "$major" -lt 23 ]]; then echo "$candidate"; return; fi
  done
  echo "error: no docker client that builds with BuildKit (install the buildx plugin)" >&2
  return 2
}

start() {
  local docker
  docker="$(cli 2>/dev/null || echo docker)"
  if "$docker" info >/dev/null 2>&1; then return; fi
  if ! command -v dockerd >/dev/null; then
    if [[ "${1:-}" == "--install" && $(id -u) == 0 ]]; then
      apt-get update -qq && apt-get install -y -qq docker.io debootstrap >/dev/null
    else
      echo "error: no Docker engine and no dockerd to start (apt-get install docker.io)" >&2
      return 2
    fi
  fi
  if [[ $(id -u) != 0 ]]; then
    echo "error: no Docker engine answers and only root can start dockerd" >&2
    return 2
  fi
  local log="${DOCKERD_LOG:-/tmp/dockerd.log}"
  setsid dockerd >"$log" 2>&1 </dev/null &
  local pid=$!
  for _ in $(seq 60); do
    if "$docker" info >/dev/null 2>&1; then echo "started dockerd $pid"; return; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill "$pid" 2>/dev/null || true # not answering: do not leave it behind
  tail -5 "$log" >&2
  echo "error: the dockerd this started (pid $pid) did not answer; log: $log" >&2
  return 2
}

base() {
  local image="${1:-python:3.11-slim}" docker
  docker="$(cli)"
  if "$docker" image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image: present"
    return
  fi
  if timeout 120 "$docker" pull "$image" >/dev/null 2>&1; then
    echo "base image $image: pulled"
    return
  fi
  echo "base image $image: cannot be pulled; building a stand-in from Debian bookworm (debootstrap)"
  if [[ $(id -u) != 0 ]]; then
    echo "error: building the stand-in base needs root (debootstrap)" >&2
    return 2
  fi
  if ! command -v debootstrap >/dev/null; then
    apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
  fi
  local mirror work
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; echo "error: debootstrap failed" >&2; return 2; }
  local rootfs_image="simclr-kfp/stand-in-rootfs:bookworm"
  tar -C "$work/rootfs" -c . | "$docker" import - "$rootfs_image" >/dev/null
  mkdir "$work/context"
  cp /etc/ssl/certs/ca-certificates.crt "$work/context/"
  DOCKER_BUILDKIT=1 "$docker" build -q --network=host --build-arg ROOTFS="$rootfs_image" \
    -t "$image" -f "$here/stand-in/Dockerfile" "$work/context" >/dev/null
  echo "base image $image: stand-in built"
}

case "${1:-}" in
  cli) cli ;;
  start) start "${2:-}" ;;
  base) base "${2:-}" ;;
  *) echo "usage: $0 cli | start [--install] | base [IMAGE]" >&2; exit 2 ;;
esac
