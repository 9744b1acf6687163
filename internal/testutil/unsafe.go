// SPDX-License-Identifier: Apache-2.0

package testutil

import "unsafe"

// unsafeBytePtr returns a pointer to a NUL-terminated copy of s, for
// prctl.
func unsafeBytePtr(s string) unsafe.Pointer {
	b := append([]byte(s), 0)
	return unsafe.Pointer(&b[0])
}
