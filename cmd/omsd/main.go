// Command omsd is the order management server.
//
//	omsd serve     run the server against configured services
//	omsd dev       start the local stack (PostgreSQL, Redis, Kafka broker) and omsd on it
//	omsd migrate   apply the schema
//	omsd inventory rebuild   recompute every Redis counter from the SQL ledger
//	omsd sourcing replay     compare a draft rule set with the active one over past orders
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "omsd:", err)
		os.Exit(1)
	}
}

const usage = `omsd: omnichannel order management

Usage:
  omsd serve [flags]              run the server against configured services (omsd serve -h)
  omsd dev [--state-dir DIR]      start PostgreSQL, Redis and the Kafka broker locally and omsd on them
  omsd migrate [flags]            apply the database schema
  omsd inventory rebuild [flags]  recompute every Redis stock counter from the SQL ledger
  omsd sourcing replay -draft RULES.json -orders PAST.jsonl [flags]
                                  compare a draft rule set with the active one over past orders
`

// run is the whole program; tests call it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
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
		return errors.New("unknown inventory command")
	case "sourcing":
		if len(args) > 1 && args[1] == "replay" {
			return cmdReplay(ctx, args[2:], getenv, stdout, stderr)
		}
		fmt.Fprint(stderr, usage)
		return errors.New("unknown sourcing command")
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
