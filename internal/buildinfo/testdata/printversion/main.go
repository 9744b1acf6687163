// SPDX-License-Identifier: Apache-2.0

// Command printversion prints buildinfo.Get() for TestLinkerFlags.
package main

import (
	"fmt"

	"github.com/tcpconnect/tcpconnect/internal/buildinfo"
)

func main() { fmt.Println(buildinfo.Get()) }
