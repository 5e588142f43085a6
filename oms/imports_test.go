package oms_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOrderDomainImportsNoDriver keeps package oms free of its adapters:
// no database, Redis or Kafka driver anywhere in its dependencies, no HTTP
// server in its own imports, and none of its adapter packages. The
// adapters (pgstore, redisrecent, httpapi, relay, wmsevents) import oms,
// never the other way round.
func TestOrderDomainImportsNoDriver(t *testing.T) {
	deps := goList(t, "{{join .Deps \"\\n\"}}", "github.com/omsd/omsd/oms")
	for _, banned := range []string{"github.com/jackc/pgx", "github.com/redis/go-redis", "github.com/segmentio/kafka-go",
		"github.com/cockroachdb/cockroach-go", "github.com/omsd/omsd/oms/"} {
		for _, d := range deps {
			if strings.HasPrefix(d, banned) {
				t.Errorf("package oms depends on %s", d)
			}
		}
	}
	for _, imp := range goList(t, "{{join .Imports \"\\n\"}}", "github.com/omsd/omsd/oms") {
		if imp == "net/http" || imp == "database/sql" {
			t.Errorf("package oms imports %s", imp)
		}
	}
}

func goList(t *testing.T, format, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", format, pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}
