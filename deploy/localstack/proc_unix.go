//go:build unix

package localstack

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// credential is the user and group a child runs under.
type credential = syscall.Credential

// credAttr runs a one-shot command (initdb) under cred.
func credAttr(cred *credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}

// postgresCredential returns the credential to run PostgreSQL under: the
// postgres user when we are root (initdb refuses root), nil otherwise.
func postgresCredential() (*credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, os.Getuid(), os.Getgid(), nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("localstack: running as root needs the postgres user to run PostgreSQL (install the Debian package postgresql): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// freezePID stops a process (SIGSTOP); thawPID continues it (SIGCONT).
func freezePID(pid int) error { return syscall.Kill(pid, syscall.SIGSTOP) }
func thawPID(pid int) error   { return syscall.Kill(pid, syscall.SIGCONT) }
