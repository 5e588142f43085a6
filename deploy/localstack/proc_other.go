//go:build unix && !linux

package localstack

import "syscall"

// childProcAttr puts a server in its own process group, under cred when
// set. There is no parent-death signal outside Linux: a server outlives a
// process killed with SIGKILL (Close stops it in every other case).
func childProcAttr(_ syscall.Signal, cred *credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
