#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Writes the Debian copyright file (machine-readable format 1.0) of the
# tcpconnect package to stdout: tcpconnect's own licences, and those of
# every Go module linked into the binary, with their licence texts as the
# modules ship them (read from the Go module cache, which the build has
# just filled).
#
#	tools/release/copyright.sh > debian/usr/share/doc/tcpconnect/copyright
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"

# indent: a licence text as a DEP-5 field body (blank lines become " .").
indent() { sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /'; }

# spdx FILE: a licence's identifier from its text.
spdx() {
	local t
	t=$(tr -s '[:space:]' ' ' <"$1")
	case $t in
	*"Apache License"*"Version 2.0"*) echo Apache-2.0 ;;
	*"Permission is hereby granted, free of charge"*) echo Expat ;;
	*"Neither the name"*|*"names of its contributors may be used"*) echo BSD-3-Clause ;;
	*"Redistribution and use in source and binary forms"*) echo BSD-2-Clause ;;
	*"Permission to use, copy, modify, and"*"distribute this software for any"*) echo ISC ;;
	*) echo "release: cannot tell the licence of $1" >&2; return 1 ;;
	esac
}

cat <<'HEAD'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tcpconnect
Upstream-Contact: https://github.com/tcpconnect/tcpconnect/issues
Source: https://github.com/tcpconnect/tcpconnect

Files: *
Copyright: 2026 The tcpconnect Authors
License: Apache-2.0

Files: internal/tracer/bpf/*
Copyright: 2026 The tcpconnect Authors
License: GPL-2.0-only or BSD-2-Clause
Comment: The BPF programs, compiled and embedded in /usr/sbin/tcpconnect.

Files: internal/tracer/bpf/headers/vmlinux_*.h
Copyright: The Linux kernel authors
License: GPL-2.0-only
Comment: Type definitions dumped with bpftool from the BTF of Linux kernels;
 compiled into the embedded BPF programs.
HEAD

declare -A seen
{
	# The Go standard library and runtime are linked in as well.
	echo "go $(go env GOVERSION) $(go env GOROOT)"
	go list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./cmd/tcpconnect | sort -u
} |
	while read -r path version dir; do
		lic=""
		for f in LICENSE LICENSE.txt LICENSE.md COPYING; do
			[ -f "$dir/$f" ] && { lic=$dir/$f; break; }
		done
		[ -n "$lic" ] || { echo "release: no licence file in $dir" >&2; exit 1; }
		id=$(spdx "$lic")
		echo
		if [ "$path" = go ]; then
			echo "Files: go/src/*"
		else
			echo "Files: vendor/$path/*"
		fi
		# The copyright lines as the licence file states them.
		c=$(grep -iE '^[[:space:]]*copyright' "$lic" | grep -viE 'copyright (notice|holders?( and|\b))|copyright owner|^\s*copyright license|copyright statement' | head -5 | sed -e 's/^[[:space:]]*//' || true)
		if [ -n "$c" ]; then
			printf 'Copyright: %s\n' "$(echo "$c" | head -1)"
			echo "$c" | tail -n +2 | sed 's/^/ /'
		else
			echo "Copyright: the authors of $path"
		fi
		what="Go module $path $version"
		[ "$path" = go ] && what="The Go standard library and runtime ($version)"
		if [ "$id" = Apache-2.0 ]; then
			# Its text is in /usr/share/common-licenses.
			echo "License: Apache-2.0"
			echo "Comment: $what, linked into /usr/sbin/tcpconnect."
			continue
		fi
		echo "License: $id-$path"
		echo "Comment: $what, linked into /usr/sbin/tcpconnect."
		echo
		echo "License: $id-$path"
		indent <"$lic"
	done

cat <<'TAIL'

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not
 use this file except in compliance with the License. You may obtain a copy
 of the License at http://www.apache.org/licenses/LICENSE-2.0
 .
 On Debian systems, the complete text of the Apache License, Version 2.0 can
 be found in "/usr/share/common-licenses/Apache-2.0".

License: GPL-2.0-only
 This program is free software; you can redistribute it and/or modify it
 under the terms of the GNU General Public License version 2 as published by
 the Free Software Foundation.
 .
 On Debian systems, the complete text of the GNU General Public License
 version 2 can be found in "/usr/share/common-licenses/GPL-2".

License: BSD-2-Clause
TAIL
indent <internal/tracer/bpf/LICENSE.BSD-2-Clause
