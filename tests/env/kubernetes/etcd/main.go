// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 in this module so that it
// shares one `go build` (and its compiled packages) with the Kubernetes binaries. etcd's own main
// module cannot be built with `go install` because its go.mod has replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
