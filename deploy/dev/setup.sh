#!/usr/bin/env bash
# Installs and starts what `npm start` and `npm test` need on a fresh Debian machine:
# npm packages, nats-server, a Docker engine (started when none answers), busybox-static
# (to build a local build image without a registry), iproute2 (the multi-host test's network
# namespaces), git and openssl (checkouts; the TLS tests' CA) and chromium (web UI tests).
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '[setup] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages"
  npm install --no-audit --no-fund >&2
fi

missing=()
command -v nats-server >/dev/null || missing+=(nats-server)
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v ip >/dev/null || missing+=(iproute2)
command -v git >/dev/null || missing+=(git)
command -v openssl >/dev/null || missing+=(openssl)
if [ "${REGATTA_SETUP_BROWSER:-1}" = 1 ] && [ "${npm_lifecycle_event:-}" = pretest ]; then
  command -v chromium >/dev/null || missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq >&2
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

docker_answers() { timeout 5 docker version >/dev/null 2>&1; }
if ! docker_answers; then
  if command -v dockerd >/dev/null && [ "$(id -u)" = 0 ]; then
    log "no Docker engine answers: starting dockerd --bridge=none --iptables=false"
    mkdir -p /var/log
    # a session of its own: the engine outlives the shell (and process group) that started it
    setsid nohup dockerd --bridge=none --iptables=false >>/var/log/regatta-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 60); do docker_answers && break; sleep 0.5; done
    docker_answers || log "dockerd did not come up (see /var/log/regatta-dockerd.log); the process containerizer will be used"
  else
    log "no Docker engine answers and dockerd cannot be started here; the process containerizer will be used"
  fi
fi
exit 0
