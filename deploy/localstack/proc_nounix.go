//go:build !unix

package localstack

import (
	"errors"
	"os"
	"syscall"
)

// credential stands in for a Unix user and group: the local stack runs its
// servers as the current user here.
type credential struct{}

func childProcAttr(syscall.Signal, *credential) *syscall.SysProcAttr { return nil }
func credAttr(*credential) *syscall.SysProcAttr                      { return nil }

// postgresCredential: the current user.
func postgresCredential() (*credential, int, int, error) {
	return nil, os.Getuid(), os.Getgid(), nil
}

var errNoFreeze = errors.New("localstack: freezing a process needs SIGSTOP (Unix only)")

func freezePID(int) error { return errNoFreeze }
func thawPID(int) error   { return errNoFreeze }
