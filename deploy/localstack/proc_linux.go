package localstack

import "syscall"

// childProcAttr puts a server in its own process group, under cred when
// set, with a parent-death signal: the server dies with us even if we are
// killed without a chance to clean up.
func childProcAttr(deathSig syscall.Signal, cred *credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: deathSig, Setpgid: true, Credential: cred}
}
