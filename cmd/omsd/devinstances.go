package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// devChildEnv is set in the environment of every process omsd dev starts
// from its own binary (omsd migrate, omsd serve), so that a process knows
// it runs under omsd dev. A test binary standing in for omsd uses it to
// run main instead of the tests.
const devChildEnv = "OMSD_DEV_CHILD"

// instance is one `omsd serve` child of omsd dev, always on the same port.
type instance struct {
	idx      int
	port     int
	listener *os.File // the listening socket of port, fd 3 of every process
	exe      string
	args     []string
	env      []string
	logPath  string
	log      *slog.Logger
	exited   chan<- instanceExit // unexpected exits are reported here

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error
	expect  bool // the coming exit is ours (kill, stop)
}

// instanceExit reports an instance that ended without being asked to.
type instanceExit struct {
	idx     int
	err     error
	logPath string
}

// URL is the instance's API base URL.
func (in *instance) URL() string { return "http://127.0.0.1:" + strconv.Itoa(in.port) }

// start launches the process. Its stdout and stderr are appended to the
// instance's log file; it gets SIGTERM if omsd dev dies.
func (in *instance) start() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd != nil && !closed(in.done) {
		return fmt.Errorf("instance %d is running", in.idx)
	}
	lf, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(in.exe, in.args...)
	cmd.Env = in.env
	cmd.Stdout, cmd.Stderr = lf, lf
	if in.listener != nil {
		cmd.ExtraFiles = []*os.File{in.listener}
	}
	cmd.SysProcAttr = instanceProcAttr()
	err = cmd.Start()
	lf.Close()
	if err != nil {
		return fmt.Errorf("start omsd serve instance %d: %w", in.idx, err)
	}
	done := make(chan struct{})
	in.cmd, in.done, in.expect = cmd, done, false
	go func() {
		err := cmd.Wait()
		in.mu.Lock()
		in.waitErr = err
		expected := in.expect
		in.mu.Unlock()
		close(done)
		if !expected && in.exited != nil {
			in.exited <- instanceExit{idx: in.idx, err: err, logPath: in.logPath}
		}
	}()
	in.log.Info("omsd serve started", "instance", in.idx, "pid", cmd.Process.Pid, "url", in.URL(), "log", in.logPath)
	return nil
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// PID is the process id of the running process (0 when none runs).
func (in *instance) PID() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil || closed(in.done) {
		return 0
	}
	return in.cmd.Process.Pid
}

// running reports whether the process is alive.
func (in *instance) running() bool { return in.PID() != 0 }

// waitReady polls /readyz until it answers 200, the process exits, or ctx
// ends.
func (in *instance) waitReady(ctx context.Context) error {
	in.mu.Lock()
	done := in.done
	in.mu.Unlock()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for {
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL()+"/readyz", nil); err == nil {
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		select {
		case <-done:
			in.mu.Lock()
			err := in.waitErr
			in.mu.Unlock()
			return fmt.Errorf("omsd serve instance %d exited before it was ready: %v; last lines of %s:\n%s", in.idx, err, in.logPath, tail(in.logPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("omsd serve instance %d not ready on %s: %w; last lines of %s:\n%s", in.idx, in.URL(), ctx.Err(), in.logPath, tail(in.logPath, 20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// signal sends sig to the process (by PID) as an expected end, and waits
// up to grace for it to exit, then kills it.
func (in *instance) signal(sig syscall.Signal, grace time.Duration) (pid int, err error) {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	if cmd == nil || closed(done) {
		in.mu.Unlock()
		return 0, nil
	}
	in.expect = true
	in.mu.Unlock()
	pid = cmd.Process.Pid
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return pid, nil
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
		return pid, fmt.Errorf("omsd serve instance %d (pid %d) did not stop within %s; killed", in.idx, pid, grace)
	}
}

// kill is kill -9, as a crash would be.
func (in *instance) kill() (int, error) { return in.signal(syscall.SIGKILL, 10*time.Second) }

// stop asks the process to shut down gracefully.
func (in *instance) stop() error {
	_, err := in.signal(syscall.SIGTERM, 20*time.Second)
	return err
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// listenFile listens on addr and returns the socket as a file to hand
// down to a child process, with its port.
func listenFile(addr string) (*os.File, int, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	defer l.Close() // the file is a duplicate that keeps the socket open
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		return nil, 0, err
	}
	return f, l.Addr().(*net.TCPAddr).Port, nil
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portOf parses the port of a host:port listen address (0 when absent).
func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	return n, nil
}

// runChild runs the dev binary with args to completion (omsd migrate).
func runChild(ctx context.Context, exe string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = oneShotProcAttr()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("omsd %s: %w: %s", args[0], err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// stopAll stops every instance, all at once.
func stopAll(ins []*instance) error {
	errs := make([]error, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = in.stop()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
