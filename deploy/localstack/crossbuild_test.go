package localstack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryPackageBuildsOnMacOSAndWindows cross-compiles the module: the
// process code that only Linux has (parent-death signals, credentials,
// SIGSTOP) lives in build-tagged files (proc_*.go), so that omsd and its
// tools build on a developer's Mac, and at least compile for Windows.
func TestEveryPackageBuildsOnMacOSAndWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the whole module; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the go tool is not on PATH (CI is set): %v", err)
		}
		t.Skipf("SKIPPED LOUDLY: the go tool is not on PATH: %v", err)
	}
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	for _, target := range []struct{ goos, goarch string }{{"darwin", "arm64"}, {"windows", "amd64"}} {
		t.Run(target.goos+"/"+target.goarch, func(t *testing.T) {
			cmd := exec.Command(goTool, "build", "./...")
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOOS="+target.goos, "GOARCH="+target.goarch, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("GOOS=%s GOARCH=%s go build ./...: %v\n%s", target.goos, target.goarch, err, out)
			}
		})
	}
}
