// Command coredns is CoreDNS v1.15.0 (see go.mod) with only the plugins the e2e cluster's Corefile
// uses (addons/coredns.yaml). Same approach as CoreDNS's documented "external plugin" builds: the
// stock coredns main imports every plugin (cloud DNS SDKs included: ~1400 packages, 79 MB); this
// one needs ~820 packages and gives a 56 MB binary.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

func main() { coremain.Run() }
