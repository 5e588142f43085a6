package main

import "context"

// wire builds the domain components on top of the connections: inventory,
// sourcing, intake and the fulfillment pipeline, and registers their
// routes and workers.
func (a *app) wire(ctx context.Context, brokers []string) error {
	return nil
}

func cmdRebuild(ctx context.Context, args []string, getenv func(string) string, stdout, stderr any) error {
	return nil
}
