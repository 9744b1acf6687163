#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds a release of tcpconnect, offline, from this checkout:
#
#	tools/release/release.sh [OUTDIR]          (default: dist)
#
# For linux/amd64 and linux/arm64 it writes to OUTDIR:
#	tcpconnect_VERSION_linux_ARCH                  static binary (CGO_ENABLED=0)
#	tcpconnect_DEBVERSION_ARCH.deb                 Debian package (lintian-checked when lintian is installed)
#	tcpconnect_VERSION_linux_ARCH.oci.tar          OCI image (FROM scratch), as an OCI archive
#	tcpconnect_VERSION_oci.tar                     both images under one multi-arch index
#	SHA256SUMS                                     checksums of all of the above
#
# Environment:
#	VERSION  the version (default: `git describe --tags` of HEAD, or a Go
#	         pseudo-version v0.0.0-DATE-HASH when no tag; +dirty for a
#	         modified tree)
#	ARCHS    architectures (default: amd64 arm64)
#	PARTS    what to build (default: bin deb image); image builds only
#	         need bin
#	IMAGE    the image's name (default: ghcr.io/tcpconnect/tcpconnect)
#
# Needs: Go, git, dpkg-deb, gzip, readelf (binutils); podman for the images (no registry: the
# base is scratch, nothing is pulled, nothing runs inside). The images are
# built in podman storage of their own in a temporary folder, removed at
# the end; load one with `podman load -i FILE.oci.tar`, or push the index
# with `skopeo copy --all oci-archive:tcpconnect_VERSION_oci.tar docker://REGISTRY/tcpconnect:VERSION`.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
root=$PWD
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
archs=${ARCHS:-amd64 arm64}
parts=${PARTS:-bin deb image}
image=${IMAGE:-ghcr.io/tcpconnect/tcpconnect}
has() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }

# Version and commit, from git. The binary gets them with -X (Go stamps
# VCS data only when the build is allowed to run git, and a source
# tarball has none).
commit=$(git rev-parse HEAD)
dirty=""
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	dirty=+dirty
fi
commit_time=$(git log -1 --format=%ct HEAD)
if [ -z "${VERSION:-}" ]; then
	if tag=$(git describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null); then
		VERSION=$tag$dirty
	else
		VERSION=v0.0.0-$(TZ=UTC date -d "@$commit_time" +%Y%m%d%H%M%S)-$(git rev-parse --short=12 HEAD)$dirty
	fi
fi
[ -n "$dirty" ] && commit=$commit-dirty
# Debian versions start with a digit; a pseudo-version sorts before any
# release (~), as Go's does.
debversion=${VERSION#v}
case $debversion in
0.0.0-*) debversion=$(echo "$debversion" | sed -E 's/^0\.0\.0-([0-9]{8})[0-9]{6}-([0-9a-f]{12})/0.0.0~git\1.\2/') ;;
esac
debversion=$(echo "$debversion" | tr - '~')
export SOURCE_DATE_EPOCH=$commit_time
echo "== release: tcpconnect $VERSION (commit $commit), Debian version $debversion, into $out"

pkg=github.com/tcpconnect/tcpconnect/internal/buildinfo
bin() { echo "$out/tcpconnect_${VERSION}_linux_$1"; }
artifacts=()

if has bin; then
	for a in $archs; do
		echo "== release: binary linux/$a"
		CGO_ENABLED=0 GOOS=linux GOARCH=$a go build -trimpath -buildvcs=false \
			-ldflags "-s -w -buildid= -X $pkg.version=$VERSION -X $pkg.commit=$commit" \
			-o "$(bin "$a")" ./cmd/tcpconnect
		if readelf -l "$(bin "$a")" | grep -q INTERP; then
			echo "release: $(bin "$a") is not static" >&2
			exit 1
		fi
		artifacts+=("$(bin "$a")")
	done
fi

if has deb; then
	for a in $archs; do
		echo "== release: Debian package for $a"
		deb=$out/tcpconnect_${debversion}_$a.deb
		d=$(mktemp -d)
		chmod 0755 "$d"
		trap 'rm -rf "$d"' EXIT
		install -D -m 0755 "$(bin "$a")" "$d/usr/sbin/tcpconnect"
		install -D -m 0644 docs/man/tcpconnect.8 "$d/usr/share/man/man8/tcpconnect.8"
		gzip -9n "$d/usr/share/man/man8/tcpconnect.8"
		install -D -m 0644 docs/completions/tcpconnect.bash "$d/usr/share/bash-completion/completions/tcpconnect"
		install -D -m 0644 docs/completions/_tcpconnect "$d/usr/share/zsh/vendor-completions/_tcpconnect"
		install -D -m 0644 docs/completions/tcpconnect.fish "$d/usr/share/fish/vendor_completions.d/tcpconnect.fish"
		doc=$d/usr/share/doc/tcpconnect
		install -d "$doc/examples"
		tools/release/copyright.sh >"$doc/copyright"
		chmod 0644 "$doc/copyright"
		install -m 0644 README.md docs/flags.md "$doc/"
		install -m 0644 deploy/kubernetes/daemonset.yaml "$doc/examples/"
		# Policy 12.3: documentation larger than 4 KiB is compressed.
		find "$doc" -type f -size +4k ! -name copyright -exec gzip -9n {} +
		# A native package's changelog: this build's entry.
		{
			echo "tcpconnect ($debversion) unstable; urgency=medium"
			echo
			echo "  * Release $VERSION,"
			echo "    built from commit $commit."
			echo
			echo " -- tcpconnect maintainers <dev@tcpconnect.invalid>  $(LC_ALL=C date -u -R -d "@$commit_time")"
		} | gzip -9n >"$doc/changelog.gz"
		install -d "$d/DEBIAN"
		size=$(du -k -s --apparent-size "$d" | cut -f1)
		cat >"$d/DEBIAN/control" <<CONTROL
Package: tcpconnect
Version: $debversion
Architecture: $a
Maintainer: tcpconnect maintainers <dev@tcpconnect.invalid>
Installed-Size: $size
Section: net
Priority: optional
Homepage: https://github.com/tcpconnect/tcpconnect
Description: trace active TCP connections with eBPF
 tcpconnect prints a line for every active TCP connection attempt on the
 host: the process, its user, the source address and port, the destination,
 and, with -r, how the attempt ended and how long the handshake took. It can
 also count connects in the kernel and serve them as Prometheus metrics, as a
 daemon on every node of a fleet.
 .
 It is a single static binary with the BPF programs embedded; it needs a
 kernel with BTF (Linux 5.8 or newer, CONFIG_DEBUG_INFO_BTF) and picks
 fentry, kprobes or cgroup socket programs, whichever the kernel offers.
CONTROL
		(cd "$d" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
		chmod 0644 "$d/DEBIAN/control" "$d/DEBIAN/md5sums"
		find "$d" -exec touch -h -d "@$commit_time" {} +
		dpkg-deb --root-owner-group -Zxz --build "$d" "$deb" >/dev/null
		rm -rf "$d"
		trap - EXIT
		if command -v lintian >/dev/null; then
			# Lintian's view of a maintainer's checks; tags that do not
			# apply to a static Go binary built outside Debian's
			# toolchain are overridden in lintian-overrides.
			lintian --fail-on error,warning --suppress-tags-from-file tools/release/lintian-overrides "$deb"
		fi
		artifacts+=("$deb")
	done
fi

if has image; then
	echo "== release: OCI images ($archs) and the multi-arch index"
	# podman wants its run root path short (under 50 characters).
	st=$(mktemp -d /tmp/tcpconnect-release.XXXXXX)
	ctx=$st/context
	mkdir -p "$ctx"
	conf=$st/containers.conf
	# The machine's default RLIMIT_NOFILE for containers may exceed what
	# this process may grant; nothing runs in these builds anyway.
	printf '[containers]\ndefault_ulimits = []\n' >"$conf"
	pod() { CONTAINERS_CONF=$conf podman --root "$st/root" --runroot "$st/run" --storage-driver vfs "$@"; }
	cleanup() { pod system reset -f >/dev/null 2>&1 || true; rm -rf "$st"; }
	trap cleanup EXIT
	cp LICENSE "$ctx/"
	cp internal/tracer/bpf/LICENSE "$ctx/LICENSE.BPF"
	cp internal/tracer/bpf/LICENSE.GPL-2.0-only internal/tracer/bpf/LICENSE.BSD-2-Clause "$ctx/"
	list=$image:$VERSION
	list=${list//+/_}
	pod manifest create "$list" >/dev/null
	for a in $archs; do
		install -D -m 0755 "$(bin "$a")" "$ctx/linux_$a/tcpconnect"
		tag=$list-$a
		pod build -q --platform "linux/$a" --timestamp "$commit_time" \
			--build-arg "VERSION=$VERSION" --build-arg "COMMIT=$commit" \
			-f "$root/Containerfile" -t "$tag" "$ctx" >/dev/null
		pod manifest add "$list" "containers-storage:$tag" >/dev/null
		f=$out/tcpconnect_${VERSION}_linux_$a.oci.tar
		rm -f "$f"
		pod save -q --format oci-archive -o "$f" "$tag"
		artifacts+=("$f")
	done
	f=$out/tcpconnect_${VERSION}_oci.tar
	rm -f "$f"
	pod manifest push -q --all "$list" "oci-archive:$f:$list"
	artifacts+=("$f")
	cleanup
	trap - EXIT
fi

echo "== release: checksums"
(cd "$out" && sha256sum "${artifacts[@]##*/}" >SHA256SUMS && cat SHA256SUMS)
echo "== release: done: $out"
