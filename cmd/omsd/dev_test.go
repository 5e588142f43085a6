package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omsd/omsd/deploy/localstack"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// TestDevWritesStackEnvAndStopsCleanly runs `omsd dev` in-process: it must
// write stack.env with the five settings once everything answers, serve a
// ready API, and on cancellation (SIGINT in the binary) remove stack.env
// and leave no process behind.
func TestDevWritesStackEnvAndStopsCleanly(t *testing.T) {
	before, _ := localstack.Descendants(os.Getpid())
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--state-dir", dir, "--log.level", "warn"}, func(string) string { return "" }, &out, &errOut)
	}()
	envPath := filepath.Join(dir, "stack.env")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(envPath); err == nil {
			break
		}
		select {
		case err := <-done:
			if os.Getenv("CI") == "" {
				t.Skipf("SKIPPED LOUDLY: omsd dev could not start outside CI: %v\n%s", err, errOut.String())
			}
			t.Fatalf("omsd dev ended before writing stack.env: %v\n%s", err, errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stack.env after 60 s\n%s", errOut.String())
		}
	}
	env := readEnv(t, envPath)
	for _, k := range []string{"OMS_API_URL", "OMS_ADMIN_KEY", "OMS_DATABASE_URL", "OMS_REDIS_URL", "OMS_KAFKA_BROKERS"} {
		if env[k] == "" {
			t.Errorf("stack.env lacks %s", k)
		}
	}
	resp, err := http.Get(env["OMS_API_URL"] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("got /readyz %d, want 200", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("omsd dev returned %v after cancellation, want nil", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("omsd dev did not stop within 60 s")
	}
	if _, err := os.Stat(envPath); !os.IsNotExist(err) {
		t.Errorf("stack.env still exists after stop")
	}
	after, _ := localstack.Descendants(os.Getpid())
	if len(after) != len(before) {
		t.Errorf("got %d descendant processes after stop (%v), want %d", len(after), after, len(before))
	}
}
