module github.com/tcpconnect/tcpconnect/tools/vmtest/testdata/smoke

go 1.26.8

require github.com/cilium/ebpf v0.22.0

require golang.org/x/sys v0.43.0 // indirect
