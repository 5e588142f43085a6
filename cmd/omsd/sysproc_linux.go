package main

import "syscall"

// instanceProcAttr: an omsd serve child gets SIGTERM if omsd dev dies, in
// its own process group.
func instanceProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
}

// oneShotProcAttr: a one-shot child (omsd migrate) is killed if omsd dev
// dies.
func oneShotProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
