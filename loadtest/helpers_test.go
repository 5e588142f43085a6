package loadtest

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/omsd/omsd/loadtest/fakeoms"
)

// startFake serves a fresh fake API and returns it with a target.
func startFake(tb testing.TB) (*fakeoms.Server, Target) {
	tb.Helper()
	f := fakeoms.New()
	srv := httptest.NewServer(f)
	tb.Cleanup(srv.Close)
	return f, Target{APIURL: srv.URL, AdminKey: f.AdminKey}
}

// mustSeed seeds the fake with a small catalogue.
func mustSeed(tb testing.TB, tg Target, cfg SeedConfig) (*SeedFile, *Client) {
	tb.Helper()
	c := NewClient(tg, ClientConfig{Timeout: 5 * time.Second})
	tb.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sf, err := Seed(ctx, c, cfg)
	if err != nil {
		tb.Fatalf("seed: %v", err)
	}
	return sf, c
}

func testContext(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
