package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omsd/omsd/deploy/localstack"
)

// init makes the test binary stand in for the omsd binary in the
// processes omsd dev starts from os.Executable() (omsd migrate, omsd
// serve): they carry devChildEnv and run main, never the tests.
func init() {
	if os.Getenv(devChildEnv) != "" {
		main()
		os.Exit(0)
	}
}

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

// isZombie reports whether a /proc/PID/stat line is an exited process
// not yet reaped.
func isZombie(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// devStack is a running `omsd dev`, in-process.
type devStack struct {
	dir    string
	env    map[string]string
	errOut *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startDev runs `omsd dev` with args until stack.env appears; it skips
// loudly outside CI when the stack cannot start.
func startDev(t *testing.T, args ...string) *devStack {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	d := &devStack{dir: dir, errOut: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	var out syncBuffer
	go func() {
		d.done <- run(ctx, append([]string{"dev", "--state-dir", dir, "--log.level", "warn"}, args...), func(string) string { return "" }, &out, d.errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(60 * time.Second):
		}
	})
	envPath := filepath.Join(dir, "stack.env")
	deadline := time.Now().Add(120 * time.Second)
	for {
		if _, err := os.Stat(envPath); err == nil {
			break
		}
		select {
		case err := <-d.done:
			if os.Getenv("CI") == "" {
				t.Skipf("SKIPPED LOUDLY: omsd dev could not start outside CI: %v\n%s", err, d.errOut.String())
			}
			t.Fatalf("omsd dev ended before writing stack.env: %v\n%s", err, d.errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stack.env after 120 s\n%s", d.errOut.String())
		}
	}
	d.env = readEnv(t, envPath)
	return d
}

// stop cancels omsd dev (SIGINT in the binary) and returns its error.
func (d *devStack) stop(t *testing.T) error {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("omsd dev did not stop within 60 s")
		return nil
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDevWritesStackEnvAndStopsCleanly runs `omsd dev --instances 2`
// in-process: it must write stack.env with every setting once everything
// answers, run each instance as a child process on its own port with its
// log under the state dir, and on cancellation remove stack.env and leave
// no process behind.
func TestDevWritesStackEnvAndStopsCleanly(t *testing.T) {
	before, _ := localstack.Descendants(os.Getpid())
	d := startDev(t, "--instances", "2")
	env := d.env
	for _, k := range []string{"OMS_API_URL", "OMS_API_URLS", "OMS_ADMIN_KEY", "OMS_DATABASE_URL", "OMS_REDIS_URL", "OMS_KAFKA_BROKERS",
		"OMS_DEV_CONTROL_URL", "OMS_DEV_CONTROL_TOKEN"} {
		if env[k] == "" {
			t.Errorf("stack.env lacks %s", k)
		}
	}
	urls := strings.Split(env["OMS_API_URLS"], ",")
	if len(urls) != 2 || urls[0] != env["OMS_API_URL"] || urls[0] == urls[1] {
		t.Fatalf("got OMS_API_URLS %q (OMS_API_URL %q), want two distinct URLs, the first being OMS_API_URL", env["OMS_API_URLS"], env["OMS_API_URL"])
	}
	for _, u := range urls {
		if got := getStatus(t, u+"/readyz"); got != 200 {
			t.Errorf("got %s/readyz %d, want 200", u, got)
		}
	}
	during, _ := localstack.Descendants(os.Getpid())
	serves := 0
	for _, pid := range during {
		if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); err == nil && strings.Contains(string(b), "serve\x00--http.addr") {
			serves++
		}
	}
	if serves != 2 {
		t.Errorf("got %d omsd serve child processes, want 2", serves)
	}
	for i := range 2 {
		if _, err := os.Stat(filepath.Join(d.dir, "omsd-"+strconv.Itoa(i)+".log")); err != nil {
			t.Errorf("no log file for instance %d: %v", i, err)
		}
	}

	if err := d.stop(t); err != nil {
		t.Errorf("omsd dev returned %v after cancellation, want nil", err)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "stack.env")); !os.IsNotExist(err) {
		t.Errorf("stack.env still exists after stop")
	}
	// Every process that the stack started must be gone. (Counting the
	// descendants before and after does not do: a server that other tests
	// of this package share starts and ends its own workers meanwhile, and
	// an orphan would no longer be a descendant at all.)
	existed := map[int]bool{}
	for _, pid := range before {
		existed[pid] = true
	}
	var left []int
	for _, pid := range during {
		if existed[pid] {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil && !isZombie(b) {
			left = append(left, pid)
		}
	}
	if len(left) > 0 {
		t.Errorf("processes of the stack still running after stop: %v", left)
	}
}
