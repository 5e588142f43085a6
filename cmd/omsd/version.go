package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version and commit are set at link time, e.g.
//
//	go build -ldflags "-X main.version=v1.4.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/omsd
//
// When empty they come from the build information the go tool records (the
// module version, vcs.revision and vcs.modified).
var (
	version string
	commit  string
)

// buildInfo is what omsd version prints and omsd_build_info carries.
type buildInfo struct {
	Version, Revision, GoVersion string
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Revision: commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" {
			b.Version = bi.Main.Version
		}
		modified := false
		rev := ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if b.Revision == "" && rev != "" {
			b.Revision = rev
			if modified {
				b.Revision += "-dirty"
			}
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

func cmdVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("omsd version takes no arguments, got %q", args)
	}
	b := readBuildInfo()
	fmt.Fprintf(stdout, "omsd %s\ncommit %s\ngo %s\n", b.Version, b.Revision, b.GoVersion)
	return nil
}

// registerBuildInfo registers omsd_build_info{version,revision,goversion} 1.
func registerBuildInfo(reg prometheus.Registerer, b buildInfo) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "omsd_build_info",
		Help:        "The running omsd: version, VCS revision and Go version as labels; always 1.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	g.Set(1)
	return reg.Register(g)
}
