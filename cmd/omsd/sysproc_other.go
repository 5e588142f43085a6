//go:build !linux

package main

import "syscall"

// No parent-death signal outside Linux: omsd dev stops its children on
// every exit but SIGKILL.
func instanceProcAttr() *syscall.SysProcAttr { return nil }
func oneShotProcAttr() *syscall.SysProcAttr  { return nil }
