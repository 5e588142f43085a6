package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// TestPromtool runs promtool on the Prometheus files: the scrape
// configuration (with the rule file it loads), the rules, and the rules'
// unit tests (alerts_test.yml). promtool comes with the Debian package
// prometheus (make deps, .ci/run). Without it the test fails in CI and
// skips, saying so on stderr, elsewhere.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found: install the Debian package prometheus (make deps) to check the alerting rules"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		fmt.Fprintln(os.Stderr, "SKIP deploy.TestPromtool:", msg)
		t.Skip(msg)
	}
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
