package localstack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// ErrMissingBinary is returned when a service binary is not installed.
var ErrMissingBinary = errors.New("localstack: missing binary")

// lookBinary finds name in PATH or in the extra directories, and names the
// Debian package that provides it when it is absent.
func lookBinary(name, pkg string, extra ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range extra {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found; install the Debian package %q (make deps does it: apt-get install -y %s)",
		ErrMissingBinary, name, pkg, pkg)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. Redis
// Cluster needs port+10000 for its bus, so callers can ask for a low port.
func freePort(low bool) (int, error) {
	if !low {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	for range 200 {
		p := 20000 + rand.IntN(25000)
		l1, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		l1.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, errors.New("localstack: no free low port pair found")
}

// waitTCP polls addr until it accepts a connection or ctx ends.
func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localstack: %s did not answer: %w", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// child is a server process started by this package.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startChild starts cmd in its own process group, under cred when it is
// set, and (on Linux) with a parent-death signal so that the server dies
// with us even if we are killed without a chance to clean up
// (proc_linux.go, proc_other.go).
func startChild(name string, cmd *exec.Cmd, deathSig syscall.Signal, cred *credential) (*child, error) {
	cmd.SysProcAttr = childProcAttr(deathSig, cred)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("localstack: start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// PID is the process id of the child.
func (c *child) PID() int { return c.cmd.Process.Pid }

// exited reports whether the child has already exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the child (by PID, never by name), waits up to grace,
// then kills it.
func (c *child) stop(sig syscall.Signal, grace time.Duration) error {
	if c == nil || c.exited() {
		return nil
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("localstack: %s (pid %d) did not stop within %s; killed", c.name, c.PID(), grace)
	}
}
