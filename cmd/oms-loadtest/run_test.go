package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omsd/omsd/loadtest/fakeoms"
)

// stack serves a fake API and writes a stack.env for it, as omsd dev does.
func stack(t *testing.T) (*fakeoms.Server, string) {
	t.Helper()
	f := fakeoms.New()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	env := filepath.Join(dir, "stack.env")
	body := "OMS_API_URL=" + srv.URL + "\nOMS_ADMIN_KEY=" + f.AdminKey + "\nOMS_DATABASE_URL=postgres://x\nOMS_REDIS_URL=redis://x\n"
	if err := os.WriteFile(env, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, env
}

func noenv(string) string { return "" }

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, noenv, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestSeedThenRunWritesReportsAndPasses(t *testing.T) {
	_, env := stack(t)
	dir := filepath.Dir(env)
	out, _, err := runCLI(t, "seed", "--env", env, "--skus", "30", "--nodes", "8", "--stock", "50")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "seeded 5 channels, 8 nodes, 30 SKUs") {
		t.Errorf("got %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "loadtest-seed.json")); err != nil {
		t.Fatalf("the seed file is not next to the env file: %v", err)
	}

	jsonPath := filepath.Join(t.TempDir(), "r", "report.json")
	out, stderr, err := runCLI(t, "run", "--env", env, "--rate", "60", "--duration", "1s", "--profile", "flash-sale",
		"--json", jsonPath, "--settle", "10ms", "--workers", "8")
	if err != nil {
		t.Fatalf("got %v\n%s\n%s", err, out, stderr)
	}
	for _, want := range []string{"audit", "PASS", "latency ms", "offered"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "oms-loadtest: run: flash-sale") {
		t.Errorf("stderr lacks the phase log:\n%s", stderr)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Profile     string           `json:"profile"`
		OfferedRate float64          `json:"offered_rate"`
		Status      map[string]int64 `json:"status_counts"`
		Audit       map[string]any   `json:"audit"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	// 1s flash sale at peak 60: a third of a second at 60/s, the rest at 6/s.
	if rep.Profile != "flash-sale" || rep.OfferedRate < 20 || rep.OfferedRate > 30 || rep.Status["201"] == 0 || rep.Audit["oversold_units"] != 0.0 {
		t.Errorf("got %+v", rep)
	}
	if _, err := os.Stat(strings.TrimSuffix(jsonPath, ".json") + ".html"); err != nil {
		t.Errorf("no HTML report next to the JSON: %v", err)
	}
}

func TestRunExitsWithAuditFailureWhenOrdersGoMissing(t *testing.T) {
	f, env := stack(t)
	if _, _, err := runCLI(t, "seed", "--env", env, "--skus", "10", "--nodes", "2", "--stock", "100"); err != nil {
		t.Fatal(err)
	}
	// The server accepts orders, then cannot find them.
	f.SetIntercept(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/orders/") {
			w.WriteHeader(http.StatusNotFound)
			return true
		}
		return false
	})
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	htmlPath := filepath.Join(t.TempDir(), "custom.html")
	out, _, err := runCLI(t, "run", "--env", env, "--rate", "30", "--duration", "300ms", "--json", jsonPath, "--html", htmlPath,
		"--settle", "1ms", "--quiet")
	if !errors.Is(err, errAuditFailed) || !strings.Contains(err.Error(), "missing_orders=9") {
		t.Fatalf("got %v, want an audit failure with 9 missing orders\n%s", err, out)
	}
	if !strings.Contains(out, "FAIL") {
		t.Errorf("stdout lacks FAIL:\n%s", out)
	}
	for _, p := range []string{jsonPath, htmlPath} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("report %s not written: %v", p, err)
		}
	}
}

func TestTargetPrecedence(t *testing.T) {
	_, env := stack(t)
	getenv := func(k string) string {
		return map[string]string{"OMS_ADMIN_KEY": "from-process", "OMS_KAFKA_BROKERS": "p:1"}[k]
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var tf targetFlags
	tf.register(fs)
	if err := fs.Parse([]string{"--env", env, "--admin-key", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	tg, err := tf.resolve(fs, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if tg.AdminKey != "from-flag" || !strings.HasPrefix(tg.APIURL, "http://127.0.0.1:") || len(tg.Brokers) != 1 || tg.Brokers[0] != "p:1" {
		t.Errorf("got %+v: want the flag's key, the file's URL and the process's brokers", tg)
	}
}

func TestUsageAndBadArguments(t *testing.T) {
	_, env := stack(t)
	tests := []struct {
		scenario string
		args     []string
		wantErr  string
		wantOut  string
	}{
		{"no command prints usage", nil, "no command", ""},
		{"help prints usage on stdout", []string{"help"}, "", "oms-loadtest seed"},
		{"an unknown command is refused", []string{"bench"}, "unknown command", ""},
		{"run needs a rate", []string{"run", "--env", env}, "--rate", ""},
		{"run needs a target", []string{"run", "--rate", "1"}, "no API URL", ""},
		{"run needs a seed file", []string{"run", "--env", env, "--rate", "1"}, "run `oms-loadtest seed` first", ""},
		{"a paid share above 1 is refused", []string{"run", "--env", env, "--rate", "1", "--paid-share", "1.5"}, "paid-share", ""},
		{"stray arguments are refused", []string{"seed", "--env", env, "extra"}, "unexpected arguments", ""},
		{"a missing env file is reported", []string{"seed", "--env", "/nonexistent/stack.env"}, "no such file", ""},
		{"-h is not an error", []string{"run", "-h"}, flag.ErrHelp.Error(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			out, _, err := runCLI(t, tt.args...)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got error %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("got stdout %q, want %q", out, tt.wantOut)
			}
		})
	}
}

func TestRunRefusesBadFaults(t *testing.T) {
	_, env := stack(t)
	if _, _, err := runCLI(t, "seed", "--env", env, "--skus", "5", "--nodes", "2", "--stock", "5"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--fault", "disk-full@1s"}, "unknown kind"},
		{[]string{"--fault", "pg-stall"}, "KIND@OFFSET"},
		{[]string{"--fault", "pg-stall@5s", "--duration", "2s"}, "not within --duration"},
		{[]string{"--fault", "pg-stall@1s", "--duration", "2s"}, "OMS_DEV_CONTROL_URL"},
	} {
		_, _, err := runCLI(t, append([]string{"run", "--env", env, "--rate", "5"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error with %q", c.args, err, c.want)
		}
	}
}

func TestRunClosedLoopWithoutAudit(t *testing.T) {
	f, env := stack(t)
	if _, _, err := runCLI(t, "seed", "--env", env, "--skus", "10", "--nodes", "2", "--stock", "100000"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "run", "--env", env, "--closed", "--rate", "10", "--duration", "100ms"); err == nil {
		t.Error("--closed with --rate: got no error")
	}
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	out, stderr, err := runCLI(t, "run", "--env", env, "--closed", "--workers", "4", "--duration", "400ms", "--no-audit",
		"--json", jsonPath, "--quiet")
	if err != nil {
		t.Fatalf("got %v, want exit 0 for a run without audit\n%s\n%s", err, out, stderr)
	}
	for _, want := range []string{"closed loop  4 clients", "NOT RUN", "not audited"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Mode         string  `json:"mode"`
		AchievedRate float64 `json:"achieved_rate"`
		Accepted     int64   `json:"accepted"`
		NotAudited   bool    `json:"not_audited"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "closed" || !rep.NotAudited || rep.Accepted == 0 || rep.Accepted != int64(len(f.OrderIDs())) || rep.AchievedRate <= 0 {
		t.Errorf("got %+v (server has %d orders)", rep, len(f.OrderIDs()))
	}
}
