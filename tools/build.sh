#!/usr/bin/env bash
# Builds the control-plane binaries the e2e tests and the local demo run (kube-apiserver, etcd,
# helm) from the Go module proxy into .tools/bin/ (git-ignored), one small Go module per tool in
# tools/<name>/ so their dependency graphs never mix.
#
# Usage (from anywhere): bash tools/build.sh [kube-apiserver|etcd|helm ...]   (default: all)
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
trap 'rc=$?; if ((rc != 0)); then log "FAILED (exit ${rc}); binaries already in .tools/bin were left as they were"; fi' EXIT

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
  local ldflags="-s -w -X ${cb}.gitVersion=${v} -X ${cb}.gitMajor=${BASH_REMATCH[1]} -X ${cb}.gitMinor=${BASH_REMATCH[2]} -X ${cb}.gitTreeState=clean"
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
  build_tool helm "$dir" helm.sh/helm/v4/cmd/helm 3 "" "-s -w -X helm.sh/helm/v4/internal/version.version=${v} -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
}

build_keychain_check() {
  # A test helper, not a control-plane part: go-containerregistry's Kubernetes keychain (the
  # kubelet's credential matching) resolving stored pull secrets for images, for the sync e2e test.
  build_tool keychain-check "${root}/tools/keychain-check" . 2 "" "-s -w"
}

tools=("$@")
((${#tools[@]})) || tools=(etcd helm kube-apiserver keychain-check)
for t in "${tools[@]}"; do
  [[ "$t" =~ ^(kube-apiserver|etcd|helm|keychain-check)$ ]] || die "unknown tool '${t}' (expected kube-apiserver, etcd, helm or keychain-check)"
done
log "using ${go_version}, GOMODCACHE=$(go env GOMODCACHE), GOCACHE=$(go env GOCACHE)"
for t in "${tools[@]}"; do
  case "$t" in
    kube-apiserver) build_kube_apiserver ;;
    etcd) build_etcd ;;
    helm) build_helm ;;
    keychain-check) build_keychain_check ;;
  esac
done
log "all done: $(cd "$bin_dir" && ls | tr '\n' ' ')"
