// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os/user"
	"strconv"
)

// userNames names UIDs as the host resolves them (os/user: NSS with cgo,
// /etc/passwd without), once per UID. Only the printing goroutine calls
// it. Bounded: UIDs beyond maxUsers are looked up every time.
type userNames struct {
	m map[uint32]string // "" caches "no name"
}

const maxUsers = 4096

func newUserNames() *userNames { return &userNames{m: map[uint32]string{}} }

func (u *userNames) Lookup(uid uint32) (string, bool) {
	if name, ok := u.m[uid]; ok {
		return name, name != ""
	}
	name := ""
	if usr, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = usr.Username
	}
	if len(u.m) < maxUsers {
		u.m[uid] = name
	}
	return name, name != ""
}
