module github.com/tcpconnect/tcpconnect/tools

go 1.26.8
