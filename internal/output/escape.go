// SPDX-License-Identifier: Apache-2.0

package output

import (
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// unsafeBytes views s as bytes without copying, for appendEscaped; the
// bytes must not be modified.
func unsafeBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends text that came from the traced system (a process
// name, a cgroup path) to dst so that it cannot act on a terminal or
// forge a line: printable characters stay, a backslash becomes `\\`, and
// control characters, escape sequences and invalid UTF-8 become `\xNN`.
func appendEscaped(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\\':
			dst = append(dst, '\\', '\\')
			i++
		case c >= 0x20 && c < 0x7f:
			dst = append(dst, c)
			i++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(src[i:])
			if r != utf8.RuneError && unicode.IsPrint(r) {
				dst = append(dst, src[i:i+n]...)
				i += n
				continue
			}
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			i++
		default:
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			i++
		}
	}
	return dst
}

// appendJSONString appends s as a JSON string. s must already be
// escaped with appendEscaped or be tool-made ASCII, so only the quote
// and the backslash need JSON escaping.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for _, c := range s {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}
