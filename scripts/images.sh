#!/usr/bin/env bash
# Builds the three service images, FROM scratch, from release binaries
# built on this host:
#   anatomy-gateway, anatomy-business, anatomy-storage
# each tagged :dev and :<git describe>. No registry is needed or used.
#
# usage: scripts/images.sh [--no-build] [--with-tools] [--base IMAGE]
#   --no-build    use the binaries already in target/release
#   --with-tools  also build anatomy-loadgen (load from inside a network)
#   --base IMAGE  assemble onto IMAGE instead of scratch (e.g. a distroless
#                 base, if you have a registry)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(gateway business storage)
TOOLS=()
BUILD=1 BASE=scratch
while (($#)); do
  case $1 in
    --no-build) BUILD=0 ;;
    --with-tools) TOOLS=(loadgen) ;;
    --base) BASE=${2:?--base needs an image}; shift ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

command -v docker >/dev/null || die "docker is not installed"
if ((BUILD)); then
  say "==> cargo build --release --workspace --bins"
  build_binaries --quiet
fi
TAG=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)

# stage SERVICE: writes target/images/SERVICE/{rootfs,data}.
stage() {
  local svc=$1 bin="$BIN_DIR/$1" dir="$ROOT/target/images/$1"
  [[ -x $bin ]] || die "$bin is missing: run without --no-build"
  rm -rf "$dir" && mkdir -p "$dir/rootfs/usr/local/bin" "$dir/rootfs/etc/ssl/certs" "$dir/data"
  strip --strip-all -o "$dir/rootfs/usr/local/bin/$svc" "$bin"
  ln -s "/usr/local/bin/$svc" "$dir/rootfs/service"
  # Exactly the shared libraries the binary links, at the same paths.
  local lib
  for lib in $(ldd "$bin" | awk '/=> \//{print $3} /^\t\//{print $1}'); do
    mkdir -p "$dir/rootfs$(dirname "$lib")"
    cp -L "$lib" "$dir/rootfs$lib"
  done
  cp -L /etc/ssl/certs/ca-certificates.crt "$dir/rootfs/etc/ssl/certs/" 2>/dev/null || true
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/data:/sbin/nologin\n' >"$dir/rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/rootfs/etc/group"
  mkdir -p "$dir/rootfs/tmp" && chmod 1777 "$dir/rootfs/tmp"
}

for svc in "${SERVICES[@]}" "${TOOLS[@]}"; do
  stage "$svc"
  say "==> anatomy-$svc:dev ($TAG)"
  # The legacy builder (no BuildKit) pulls nothing for FROM scratch.
  if ! out=$(DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$BASE" \
    -f "$ROOT/deploy/Dockerfile" -t "anatomy-$svc:dev" -t "anatomy-$svc:$TAG" \
    "$ROOT/target/images/$svc" 2>&1); then
    printf '%s\n' "$out" >&2
    die "docker build of anatomy-$svc failed"
  fi
done
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^anatomy-[a-z]+:dev ' | sort
