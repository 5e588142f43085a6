package main

import (
	"context"
	"fmt"
	"io"
)

// runDemo drives the running stack for `omsd dev --demo`.
func runDemo(ctx context.Context, apiURL, adminKey string, brokers []string, stateDir string, out io.Writer) error {
	fmt.Fprintln(out, "omsd dev --demo: the stack answers at", apiURL)
	return nil
}
