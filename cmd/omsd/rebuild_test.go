package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestInventoryRebuildCommand wipes Redis under a running omsd and runs
// `omsd inventory rebuild`: every counter comes back from the SQL ledger,
// reservations of stored orders included.
func TestInventoryRebuildCommand(t *testing.T) {
	s := newTestServer(t)
	key := seedBasic(t, s)
	s.mustCall("POST", "/v1/orders", key, orderBody("RB-1", line("SKU-1", 4)), 201, nil)
	s.mustCall("POST", "/v1/orders", key, orderBody("RB-2", line("SKU-2", 2)), 201, nil)
	before1, before2 := s.levels("SKU-1"), s.levels("SKU-2")

	if err := s.Redis.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	var p problem
	if got := s.call("POST", "/v1/orders", key, orderBody("RB-3"), nil, &p); got != 503 {
		t.Fatalf("with Redis empty: got %d, want 503", got)
	}
	var out, errOut bytes.Buffer
	env := map[string]string{"OMS_DATABASE_URL": s.cfg.DatabaseURL, "OMS_REDIS_URL": s.cfg.RedisURL}
	if err := run(context.Background(), []string{"inventory", "rebuild"}, func(k string) string { return env[k] }, &out, &errOut); err != nil {
		t.Fatalf("rebuild: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "drift after rebuild: 0") {
		t.Errorf("got %q, want a rebuild with no drift left", out.String())
	}
	after1, after2 := s.levels("SKU-1"), s.levels("SKU-2")
	for _, c := range []struct{ before, after levelsView }{{before1, after1}, {before2, after2}} {
		if len(c.before.Nodes) != len(c.after.Nodes) {
			t.Fatalf("got %d nodes, want %d", len(c.after.Nodes), len(c.before.Nodes))
		}
		for i := range c.before.Nodes {
			if c.before.Nodes[i] != c.after.Nodes[i] {
				t.Errorf("%s: got %+v after the rebuild, want %+v", c.before.SKU, c.after.Nodes[i], c.before.Nodes[i])
			}
		}
	}
	s.mustCall("POST", "/v1/orders", key, orderBody("RB-3"), 201, nil)
}
