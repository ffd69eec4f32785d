#!/usr/bin/env bash
# Builds the container image from the unchanged Dockerfile with buildah, on local stand-ins for its two
# base images (node:24-bookworm-slim and gcr.io/distroless/nodejs24-debian12 cannot be pulled here),
# and exports it as an OCI archive. docs/image.md says what the stand-ins hold and how they differ.
#
#   bash tools/image/build.sh          # cached: does nothing when no input changed
#   IMAGE_REBUILD=1 bash tools/image/build.sh
#
# Everything lives under .tools/image/ (git-ignored): buildah's storage (--root/--runroot), the stamps
# and the archive. Needs root (buildah's chroot isolation, mmdebstrap's root mode).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$repo/.tools/image
script=$repo/tools/image/build.sh

BUILD_BASE=localhost/acr-pull-webhook-standin/node-build:24
RUNTIME_BASE=localhost/acr-pull-webhook-standin/distroless-nodejs:24
IMAGE=localhost/acr-pull-webhook:dev
ARCHIVE=$out/acr-pull-webhook.oci.tar
SUITE=bookworm
# The Debian mirror the host's apt uses (deb822 sources first, then sources.list): the stand-ins come
# from the same packages the machine already trusts.
MIRROR=$(
  {
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true
    grep -hs '^deb ' /etc/apt/sources.list | awk '$2 !~ /^\[/ {print $2}' || true
  } | grep -v -- '-security' | head -n 1 || true
)
[[ -n $MIRROR ]] || { echo "tools/image/build.sh: no Debian mirror found in the host's apt sources" >&2; exit 1; }
# npm for the build stand-in (node:24 images ship the npm bundled with their Node release).
NPM_VERSION=11.19.1
NODE_BIN=$(readlink -f "$repo/node_modules/node/bin/node")

log() { printf '[image] %s\n' "$*" >&2; }
sha() { sha256sum | cut -d' ' -f1; }

if [[ $(id -u) != 0 ]]; then
  log "needs root (buildah --isolation chroot, mmdebstrap): run it as root"
  exit 1
fi
if [[ ! -x $NODE_BIN ]]; then
  log "$repo/node_modules/node/bin/node is missing: run 'npm ci' first"
  exit 1
fi
if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
  log "installing buildah and mmdebstrap (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap >/dev/null
fi

# overlay (native on this ext4) copies nothing per step; vfs (IMAGE_STORAGE_DRIVER=vfs) works everywhere
# but copies every layer in full, several times slower and GBs larger.
driver=${IMAGE_STORAGE_DRIVER:-overlay}
mkdir -p "$out/stamps" "$out/cache"
# One build at a time (a test and the demo may both ask for the image): the second waits, then finds it cached.
exec 9>"$out/lock"
flock 9
bh() {
  TMPDIR=$work buildah --root "$out/storage-$driver" --runroot "$out/run-$driver" --storage-driver "$driver" "$@"
}
has_image() { bh images --quiet "$1" >/dev/null 2>&1; }

work=$(mktemp -d "$out/work.XXXXXX")
# buildah's large temporary files, and the blob-info cache root's buildah always keeps in
# /var/lib/containers/cache (no flag moves it): removed at exit unless it was there before.
[[ -e /var/lib/containers ]] && var_lib_containers=keep || var_lib_containers=remove
containers=()
cleanup() {
  for ctr in "${containers[@]}"; do
    [[ -n $ctr ]] || continue
    bh umount "$ctr" >/dev/null 2>&1 || true
    bh rm "$ctr" >/dev/null 2>&1 || true
  done
  bh umount --all >/dev/null 2>&1 || true
  rm -rf "$work"
  [[ $var_lib_containers == keep ]] || rm -rf /var/lib/containers
}
trap cleanup EXIT

# A host that reaches the npm registry through a TLS-intercepting proxy has its CA under
# /usr/local/share/ca-certificates; the build stand-in trusts the same CAs so `npm ci` works there too.
extra_cas=()
for ca in /usr/local/share/ca-certificates/*.crt; do [[ -f $ca ]] && extra_cas+=("$ca"); done

# --- the stand-in bases ---------------------------------------------------------------------------
bases_stamp=$(
  {
    sed -n '/^# --- the stand-in bases/,/^# --- the image/p' "$script"
    echo "$SUITE $MIRROR $NPM_VERSION $BUILD_BASE $RUNTIME_BASE"
    sha256sum "$NODE_BIN" "${extra_cas[@]}"
  } | sha
)

# A file from the Debian root filesystem, with its symlink, at the same path in the distroless one.
copy_lib() {
  local rootfs=$1 target=$2 path=$3 real dir
  real=$(chroot "$rootfs" readlink -f "$path")
  dir=$(chroot "$rootfs" readlink -f "$(dirname "$path")")
  mkdir -p "$target$(dirname "$real")" "$target$dir"
  cp -a "$rootfs$real" "$target$real"
  [[ $dir/$(basename "$path") == "$real" ]] || cp -a "$rootfs$dir/$(basename "$path")" "$target$dir/"
}

# A working container from scratch holding the directory $1, committed as $2 with config flags $3…
commit_rootfs() {
  local rootfs=$1 tag=$2 ctr mnt
  shift 2
  ctr=$(bh from scratch)
  containers+=("$ctr")
  mnt=$(bh mount "$ctr")
  tar -C "$rootfs" --numeric-owner -cf - . | tar -C "$mnt" --numeric-owner -xpf -
  bh umount "$ctr" >/dev/null
  bh config --os linux --arch amd64 "$@" "$ctr"
  bh commit --quiet --rm "$ctr" "$tag" >/dev/null
  containers=("${containers[@]/$ctr/}")
}

build_bases() {
  local rootfs=$work/debian distroless=$work/distroless
  log "stand-in bases: mmdebstrap $SUITE (minbase + ca-certificates) from $MIRROR"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$MIRROR"
  install -m 0755 "$NODE_BIN" "$rootfs/usr/local/bin/node"

  # The runtime stand-in, in the distroless layout, from the same Debian packages: node, the shared
  # libraries it links (ldd), Debian's CA bundle, passwd/group with nonroot 65532; no shell.
  mkdir -p "$distroless"/{etc/ssl/certs,nodejs/bin,tmp,root,home/nonroot,usr/lib}
  install -m 0755 "$NODE_BIN" "$distroless/nodejs/bin/node"
  local libs
  libs=$(chroot "$rootfs" ldd /usr/local/bin/node | grep -o '/[^ ]*' | sort -u)
  for lib in $libs; do copy_lib "$rootfs" "$distroless" "$lib"; done
  for link in lib lib64; do [[ -L $rootfs/$link ]] && cp -a "$rootfs/$link" "$distroless/"; done
  cp -a "$rootfs/etc/ssl/certs/ca-certificates.crt" "$distroless/etc/ssl/certs/"
  cp -a "$rootfs/etc/nsswitch.conf" "$distroless/etc/"
  cp -aL "$rootfs/etc/os-release" "$distroless/etc/os-release"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$distroless/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$distroless/etc/group"
  chmod 1777 "$distroless/tmp"
  chmod 0700 "$distroless/root" "$distroless/home/nonroot"
  chown 65532:65532 "$distroless/home/nonroot"
  if [[ -e $distroless/bin/sh || -e $distroless/usr/bin/sh ]]; then
    log "the distroless stand-in must not have a shell"
    exit 1
  fi

  # The build stand-in: the Debian root filesystem with Node 24 and npm in /usr/local, as node:24 has.
  log "npm $NPM_VERSION for the build stand-in"
  local tgz=$out/cache/npm-$NPM_VERSION.tgz
  if [[ ! -f $tgz ]]; then
    # TMPDIR: npm turns on Node's compile cache in the temp dir; in $work it goes with the rest of the build's files.
    (cd "$work" && TMPDIR=$work npm pack --silent "npm@$NPM_VERSION" >/dev/null)
    mv "$work/npm-$NPM_VERSION.tgz" "$tgz"
  fi
  mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
  tar -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner -xzf "$tgz"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  if ((${#extra_cas[@]})); then
    cp "${extra_cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
    # Without the caller's TMPDIR (a test run's own, test/support/tmp-guard.ts), which the chroot does not have.
    env -u TMPDIR chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin

  log "committing $BUILD_BASE and $RUNTIME_BASE"
  bh rmi --force "$BUILD_BASE" "$RUNTIME_BASE" >/dev/null 2>&1 || true
  commit_rootfs "$rootfs" "$BUILD_BASE" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    --cmd node --label "org.opencontainers.image.description=stand-in for node:24-bookworm-slim"
  commit_rootfs "$distroless" "$RUNTIME_BASE" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --user 65532 --workingdir /home/nonroot --entrypoint '["/nodejs/bin/node"]' \
    --label "org.opencontainers.image.description=stand-in for gcr.io/distroless/nodejs24-debian12:nonroot"
  rm -rf "$rootfs" "$distroless"
  echo "$bases_stamp" >"$out/stamps/bases"
}

start=$(date +%s)
if [[ ${IMAGE_REBUILD:-} == 1 || $(cat "$out/stamps/bases" 2>/dev/null) != "$bases_stamp" ]] ||
  ! has_image "$BUILD_BASE" || ! has_image "$RUNTIME_BASE"; then
  build_bases
  log "bases built in $(($(date +%s) - start)) s"
else
  log "bases up to date"
fi

# --- the image ------------------------------------------------------------------------------------
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$repo/package.json")
image_stamp=$(
  {
    echo "$bases_stamp $version"
    cd "$repo"
    find Dockerfile .dockerignore package.json package-lock.json tsconfig*.json src certs-gen \
      tools/image/build.sh tools/image/bundle.ts -type f -print0 | sort -z | xargs -0 sha256sum
  } | sha
)
if [[ ${IMAGE_REBUILD:-} != 1 && -f $ARCHIVE && $(cat "$out/stamps/image" 2>/dev/null) == "$image_stamp" ]] &&
  has_image "$IMAGE"; then
  log "image up to date: $ARCHIVE"
  exit 0
fi

# The revision label names the commit this build ran at (not part of the stamp: a commit that changes
# none of the inputs does not rebuild).
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
log "buildah bud $IMAGE (version $version, revision $revision)"
image_start=$(date +%s)
bh bud --isolation chroot --layers --pull=never --quiet \
  --build-arg "NODE_BUILD_IMAGE=$BUILD_BASE" --build-arg "NODE_RUNTIME_IMAGE=$RUNTIME_BASE" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --tag "$IMAGE" --file "$repo/Dockerfile" "$repo" >/dev/null
rm -f "$ARCHIVE"
bh push --quiet "$IMAGE" "oci-archive:$ARCHIVE:acr-pull-webhook:dev"
echo "$image_stamp" >"$out/stamps/image"
log "image built in $(($(date +%s) - image_start)) s: $ARCHIVE ($(du -m "$ARCHIVE" | cut -f1) MiB)"
