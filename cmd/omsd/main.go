// Command omsd is the order management server.
//
//	omsd serve     run the server against configured services
//	omsd dev       start the local stack (PostgreSQL, Redis, Kafka broker) and omsd on it
//	omsd migrate   apply the schema
//	omsd inventory rebuild   recompute every Redis counter from the SQL ledger
//	omsd sourcing replay     compare a draft rule set with the active one over past orders
//	omsd version             print the version, the VCS revision and the Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go watchSignals(sigs, cancel, os.Exit, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	cancel()
	if code := exitCode(err); code != 0 {
		fmt.Fprintln(os.Stderr, "omsd:", err)
		os.Exit(code)
	}
}

// Exit codes of omsd.
const (
	exitError    = 1   // a run-time failure (a dependency that never came up, a component that failed)
	exitUsage    = 2   // a bad command line or setting: nothing was started
	exitSignaled = 130 // a second SIGINT/SIGTERM during the drain: exited at once
)

// usageError is a bad command line or setting (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &u):
		return exitUsage
	default:
		return exitError
	}
}

// watchSignals turns the first SIGINT/SIGTERM into a drain (cancel: omsd
// stops taking requests and shuts down in order) and the second into an
// immediate exit with code 130, for an operator who will not wait.
func watchSignals(sigs <-chan os.Signal, cancel func(), exit func(int), log *slog.Logger) {
	s := <-sigs
	log.Info("signal received: draining; a second one exits at once", "signal", s.String())
	cancel()
	s = <-sigs
	log.Warn("second signal: exiting at once without draining", "signal", s.String(), "exit_code", exitSignaled)
	exit(exitSignaled)
}

const usage = `omsd: omnichannel order management

Usage:
  omsd serve [flags]              run the server against configured services (omsd serve -h)
  omsd dev [--state-dir DIR]      start PostgreSQL, Redis and the Kafka broker locally and omsd on them
  omsd migrate [flags]            apply the database schema
  omsd inventory rebuild [flags]  recompute every Redis stock counter from the SQL ledger
  omsd sourcing replay -draft RULES.json -orders PAST.jsonl [flags]
                                  compare a draft rule set with the active one over past orders
  omsd version                    print the version, the VCS revision and the Go version

Each command takes only its own flags (omsd COMMAND -h lists them); every setting
also reads an OMS_* environment variable, and a flag beats it.

Exit status: 0 done (or stopped by a signal after draining), 1 a run-time failure,
2 a bad command line or setting (named in the message), 130 a second signal
during the drain.
`

// run is the whole program; tests call it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], getenv, stdout, stderr)
	case "dev":
		return cmdDev(ctx, args[1:], getenv, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, args[1:], getenv, stdout, stderr)
	case "inventory":
		if len(args) > 1 && args[1] == "rebuild" {
			return cmdRebuild(ctx, args[2:], getenv, stdout, stderr)
		}
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("unknown inventory command")}
	case "sourcing":
		if len(args) > 1 && args[1] == "replay" {
			return cmdReplay(ctx, args[2:], getenv, stdout, stderr)
		}
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("unknown sourcing command")}
	case "version", "-version", "--version":
		return cmdVersion(args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", args[0])}
	}
}
