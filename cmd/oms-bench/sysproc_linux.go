//go:build linux

package main

import "syscall"

// childProcAttr makes a child get SIGTERM if oms-bench dies, so that no
// stack outlives it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
