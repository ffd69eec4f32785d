#!/usr/bin/env bash
# Builds the control-plane binaries the e2e tests and the local demo run (kube-apiserver, etcd,
# helm) from the Go module proxy into .tools/bin/ (git-ignored), one small Go module per tool in
# tools/<name>/ so their dependency graphs never mix.
#
# Usage (from anywhere): bash tools/build.sh [kube-apiserver|etcd|helm ...]   (default: all)
#        bash tools/build.sh monitoring   (prometheus and promtool, for the chart's alerts and dashboard)
#        bash tools/build.sh node   (the one-node cluster: kubelet, containerd, runc, CNI, registry, ...)
#
# A binary is rebuilt only when its stamp changes: a hash of the module's go.mod + go.sum, the build
# flags and the Go version. A warm rerun therefore takes well under a second. The first build is
# long (about 10 minutes on 2 cores, 6 of them for kube-apiserver; see tools/README.md); the default
# GOMODCACHE/GOCACHE are used on purpose so a machine-level cache makes later builds cheap too.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${root}/.tools/bin"
stamp_dir="${root}/.tools/stamps"
mkdir -p "$bin_dir" "$stamp_dir"

# GOTOOLCHAIN=local: never download another toolchain behind our back (no internet here besides the
# module proxy, and a silently different compiler would defeat the stamp).
# -mod=readonly: go.sum in tools/<name>/ must be complete and committed; a missing checksum is an
# error to fix with `go mod tidy`, not something to patch up at build time.
# -buildvcs=false: the modules live inside this git checkout; VCS stamping would make the binary
# depend on whatever else is dirty in the working tree.
export GOTOOLCHAIN=local
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0

log() { printf 'tools/build.sh: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
on_exit() {
  local rc=$?
  ((rc == 0)) || log "FAILED (exit ${rc}); binaries already in .tools/bin were left as they were"
}
trap on_exit EXIT

command -v go > /dev/null || die "the 'go' command is not on PATH (Go >= 1.26 is needed)"
go_version="$(go env GOVERSION)" || die "'go env GOVERSION' failed"

# Two concurrent runs (e.g. CI and a developer's test run) would race on the same output files.
exec 9> "${root}/.tools/build.lock"
if command -v flock > /dev/null; then
  flock 9 || die "could not lock ${root}/.tools/build.lock"
fi

# module_version <module dir> <module path>: the version of a dependency as pinned by go.mod/go.sum.
module_version() {
  (cd "$1" && go list -m -f '{{.Version}}' "$2") || die "cannot resolve $2 in $1 (run 'go mod tidy' there?)"
}

# build_tool <name> <module dir> <package> <expected minutes> <tags> <ldflags>
build_tool() {
  local name="$1" dir="$2" pkg="$3" minutes="$4" tags="$5" ldflags="$6"
  local out="${bin_dir}/${name}" stamp_file="${stamp_dir}/${name}"
  mkdir -p "$(dirname "$out")" "$(dirname "$stamp_file")" # names such as cni/bridge
  [[ -f "${dir}/go.mod" && -f "${dir}/go.sum" ]] || die "${dir}/go.mod or go.sum is missing"

  local stamp
  stamp="$(
    {
      cat "${dir}/go.mod" "${dir}/go.sum"
      # A module with its own main (keychain-check) is rebuilt when its source changes too.
      find "$dir" -maxdepth 1 -name '*.go' -print0 | sort -z | xargs -0 -r cat
      printf 'pkg=%s\ntags=%s\nldflags=%s\ngo=%s\nGOOS=%s GOARCH=%s CGO_ENABLED=%s\n' \
        "$pkg" "$tags" "$ldflags" "$go_version" "$(go env GOOS)" "$(go env GOARCH)" "$CGO_ENABLED"
    } | sha256sum | cut -d' ' -f1
  )"
  if [[ -x "$out" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
    log "${name}: up to date (${out})"
    return 0
  fi

  log "${name}: building ${pkg} (first build ~${minutes} min on 2 cores, seconds with a warm GOCACHE)..."
  local start=$SECONDS tmp="${out}.tmp.$$"
  # Build to a temporary name and rename: an interrupted build never leaves a half-written binary
  # that a later run (or the test harness) would mistake for a good one.
  if ! (cd "$dir" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$tmp" "$pkg"); then
    rm -f "$tmp"
    die "${name}: 'go build ${pkg}' failed in ${dir}"
  fi
  mv -f "$tmp" "$out"
  printf '%s\n' "$stamp" > "$stamp_file"
  log "${name}: built in $((SECONDS - start))s -> ${out}"
}

build_kube_apiserver() {
  local dir="${root}/tools/kube-apiserver" v
  v="$(module_version "$dir" k8s.io/kubernetes)"
  [[ "$v" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || die "unexpected k8s.io/kubernetes version '${v}'"
  # Without these, /version reports v0.0.0-master+$Format:...$ and Helm kubeVersion checks fail.
  local cb=k8s.io/component-base/version
  local ldflags="-s -w -X ${cb}.gitVersion=${v} -X ${cb}.gitMajor=${BASH_REMATCH[1]}"
  ldflags+=" -X ${cb}.gitMinor=${BASH_REMATCH[2]} -X ${cb}.gitTreeState=clean"
  # Tags as upstream's hack/lib/golang.sh builds release binaries.
  build_tool kube-apiserver "$dir" k8s.io/kubernetes/cmd/kube-apiserver 6 "selinux,notest" "$ldflags"
}

build_etcd() {
  local dir="${root}/tools/etcd"
  # go.etcd.io/etcd/server/v3 is itself package main; etcd's version string is a constant in
  # go.etcd.io/etcd/api/v3/version, so no -X is needed for `etcd --version` to be right.
  build_tool etcd "$dir" go.etcd.io/etcd/server/v3 1.5 "" "-s -w"
}

build_helm() {
  local dir="${root}/tools/helm" v
  v="$(module_version "$dir" helm.sh/helm/v4)"
  # As helm's Makefile does; otherwise `helm version` prints only the minor (v4.3).
  local pkg=helm.sh/helm/v4/internal/version
  build_tool helm "$dir" helm.sh/helm/v4/cmd/helm 3 "" "-s -w -X ${pkg}.version=${v} -X ${pkg}.gitTreeState=clean"
}

build_keychain_check() {
  # A test helper, not a control-plane part: go-containerregistry's Kubernetes keychain (the
  # kubelet's credential matching) resolving stored pull secrets for images, for the sync e2e test.
  build_tool keychain-check "${root}/tools/keychain-check" . 2 "" "-s -w"
}

# ---------------------------------------------------------------------------------------------
# The one-node cluster (test/support/node-cluster.ts): `bash tools/build.sh node`.

# kube_ldflags: version ldflags for binaries of the pinned k8s.io/kubernetes (see build_kube_apiserver).
kube_ldflags() {
  local v
  v="$(module_version "${root}/tools/kube-apiserver" k8s.io/kubernetes)"
  [[ "$v" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || die "unexpected k8s.io/kubernetes version '${v}'"
  local cb=k8s.io/component-base/version
  printf '%s' "-s -w -X ${cb}.gitVersion=${v} -X ${cb}.gitMajor=${BASH_REMATCH[1]}" \
    " -X ${cb}.gitMinor=${BASH_REMATCH[2]} -X ${cb}.gitTreeState=clean"
}

# The node components come from the kube-apiserver module itself (more `tool` lines in its go.mod),
# so they share its pinned k8s.io/kubernetes, replace block and most of its compiled packages.
build_kube_node() {
  local name="$1" ldflags
  ldflags="$(kube_ldflags)"
  build_tool "$name" "${root}/tools/kube-apiserver" "k8s.io/kubernetes/cmd/${name}" 3 "selinux,notest" "$ldflags"
}

build_containerd() {
  local dir="${root}/tools/containerd" v
  v="$(module_version "$dir" github.com/containerd/containerd/v2)"
  local ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=${v}"
  # Static with CGO_ENABLED=0: the btrfs snapshotter (the only cgo part) is left out by its build tag.
  local tags="no_btrfs urfave_cli_no_docs"
  build_tool containerd "$dir" github.com/containerd/containerd/v2/cmd/containerd 3 "$tags" "$ldflags"
  build_tool containerd-shim-runc-v2 "$dir" github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 1 \
    "$tags" "$ldflags"
  build_tool ctr "$dir" github.com/containerd/containerd/v2/cmd/ctr 1 "$tags" "$ldflags"
}

# ensure_deb <package> <file>: Debian packages the node needs besides Go (cgo headers, static
# binaries, nft). Installed with apt-get when missing and we are root; otherwise a clear error.
ensure_deb() {
  local pkg="$1" file="$2"
  [[ -e "$file" ]] && return 0
  if ((EUID == 0)) && command -v apt-get > /dev/null; then
    log "${pkg}: ${file} missing, running apt-get install -y ${pkg}"
    # A fresh machine's package lists may be missing or stale: refresh them once, then install.
    if [[ -z "${apt_updated:-}" ]]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
      apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg" >&2 || die "apt-get install -y ${pkg} failed"
  else
    die "${file} is missing: install Debian's ${pkg} (apt-get install -y ${pkg})"
  fi
}

build_runc() {
  # runc needs cgo (its nsenter is C) and libseccomp for the seccomp profiles pods run with.
  ensure_deb libseccomp-dev /usr/include/seccomp.h
  command -v gcc > /dev/null || die "gcc is needed for runc (cgo): apt-get install -y gcc"
  CGO_ENABLED=1 build_tool runc "${root}/tools/runc" github.com/opencontainers/runc 1 \
    "seccomp urfave_cli_no_docs" "-s -w"
}

build_cni() {
  local dir="${root}/tools/cni-plugins" p
  for p in main/bridge ipam/host-local main/loopback; do
    build_tool "cni/${p#*/}" "$dir" "github.com/containernetworking/plugins/plugins/${p}" 1 "" "-s -w"
  done
}

build_registry() {
  local dir="${root}/tools/registry" v
  v="$(module_version "$dir" github.com/distribution/distribution/v3)"
  build_tool registry "$dir" github.com/distribution/distribution/v3/cmd/registry 1 "" \
    "-s -w -X github.com/distribution/distribution/v3/version.version=${v}"
}

build_crane() {
  build_tool crane "${root}/tools/crane" github.com/google/go-containerregistry/cmd/crane 1 "" "-s -w"
}

# Prometheus and promtool for the chart's alerts and dashboard (test/integration/monitoring.test.ts,
# test/e2e/prometheus.test.ts). remove_all_sd keeps only the file and HTTP service discovery (the
# tests use static targets), which leaves the cloud SDKs out of the build; without builtinassets the
# web UI is read from disk (absent here) and only the HTTP API is served, so no npm build is needed.
build_prometheus() {
  local dir="${root}/tools/prometheus" v
  v="$(module_version "$dir" github.com/prometheus/prometheus)"
  # The module is tagged v0.3XX.Y for Prometheus 3.XX.Y; as promu does, so `--version` says which.
  [[ "$v" =~ ^v0\.3([0-9]{2})\.([0-9]+)$ ]] || die "unexpected github.com/prometheus/prometheus version '${v}'"
  local pv="3.$((10#${BASH_REMATCH[1]})).${BASH_REMATCH[2]}" cv=github.com/prometheus/common/version
  local ldflags="-s -w -X ${cv}.Version=${pv} -X ${cv}.Branch=HEAD -X ${cv}.Revision=${v}"
  build_tool prometheus "$dir" github.com/prometheus/prometheus/cmd/prometheus 12 remove_all_sd "$ldflags"
  build_tool promtool "$dir" github.com/prometheus/prometheus/cmd/promtool 7 remove_all_sd "$ldflags"
}

# The pod sandbox binary, in C as upstream's: rebuilt when pause.c or the compiler changes.
build_pause() {
  command -v gcc > /dev/null || die "gcc is needed for the pause binary: apt-get install -y gcc"
  local src="${root}/tools/pause/pause.c" out="${bin_dir}/pause" stamp_file="${stamp_dir}/pause" stamp
  stamp="$({ cat "$src"; gcc --version | head -n 1; } | sha256sum | cut -d' ' -f1)"
  if [[ -x "$out" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
    log "pause: up to date (${out})"
    return 0
  fi
  gcc -static -Os -s -Wall -o "${out}.tmp.$$" "$src" || die "pause: gcc failed"
  mv -f "${out}.tmp.$$" "$out"
  printf '%s\n' "$stamp" > "$stamp_file"
  log "pause: built -> ${out}"
}

node_tools=(kube-controller-manager kube-scheduler kubelet kube-proxy containerd runc cni registry crane pause
  busybox nft htpasswd)

tools=("$@")
# Default: everything the tests and the demo run, the one-node cluster and Prometheus included.
((${#tools[@]})) || tools=(etcd helm kube-apiserver keychain-check node monitoring)
if [[ " ${tools[*]} " == *" node "* || " ${tools[*]} " == *" monitoring "* ]]; then
  expanded=()
  for t in "${tools[@]}"; do
    case "$t" in
      node) expanded+=(etcd kube-apiserver "${node_tools[@]}") ;;
      monitoring) expanded+=(prometheus) ;;
      *) expanded+=("$t") ;;
    esac
  done
  tools=()
  for t in "${expanded[@]}"; do [[ " ${tools[*]} " == *" ${t} "* ]] || tools+=("$t"); done
fi
for t in "${tools[@]}"; do
  [[ " etcd helm kube-apiserver keychain-check prometheus ${node_tools[*]} " == *" ${t} "* ]] ||
    die "unknown tool '${t}' (expected kube-apiserver, etcd, helm, keychain-check, node, monitoring," \
      "prometheus or one of: ${node_tools[*]})"
done
log "using ${go_version}, GOMODCACHE=$(go env GOMODCACHE), GOCACHE=$(go env GOCACHE)"
for t in "${tools[@]}"; do
  case "$t" in
    kube-apiserver) build_kube_apiserver ;;
    etcd) build_etcd ;;
    helm) build_helm ;;
    keychain-check) build_keychain_check ;;
    prometheus) build_prometheus ;;
    kube-controller-manager | kube-scheduler | kubelet | kube-proxy) build_kube_node "$t" ;;
    containerd) build_containerd ;;
    runc) build_runc ;;
    cni) build_cni ;;
    registry) build_registry ;;
    crane) build_crane ;;
    pause) build_pause ;;
    # The test image's only file: Debian's statically linked busybox.
    busybox) ensure_deb busybox-static /bin/busybox ;;
    # kube-proxy runs in nftables mode inside the cluster's network namespace.
    nft) ensure_deb nftables /usr/sbin/nft ;;
    # bcrypt lines for the registries' htpasswd files.
    htpasswd) ensure_deb apache2-utils /usr/bin/htpasswd ;;
  esac
done
log "all done: $(cd "$bin_dir" && ls | tr '\n' ' ')"
