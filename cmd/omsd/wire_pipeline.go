package main

import (
	"context"
	"net/url"
	"strings"

	"github.com/omsd/omsd/inventory/redisstock"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi"
	"github.com/omsd/omsd/oms/kafkabus"
	"github.com/omsd/omsd/oms/relay"
	"github.com/omsd/omsd/oms/wmsevents"
)

// wirePipeline builds the fulfillment pipeline on top of intake's stock
// engine and catalog: the fulfillment service (payment, cancellation,
// warehouse events, expiry), the outbox relay, the wms.events consumer and
// the expiry worker, and registers their routes and workers.
func (a *app) wirePipeline(ctx context.Context, brokers []string, stock *redisstock.Store, catalog *oms.CatalogCache, limits oms.Limits) error {
	f, err := oms.NewFulfillmentService(oms.FulfillmentConfig{Logger: a.log, Registerer: a.reg}, a.store, stock, catalog)
	if err != nil {
		return err
	}
	f.GiveBack = oms.GiveBackLimits(limits, catalog, a.log)
	a.http.Register(httpapi.FulfillmentRoutes(f))

	w, err := kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: brokers})
	if err != nil {
		return err
	}
	// Closers run in reverse order: the writer flushes before the pools
	// close (the workers have stopped by then).
	a.closers = append(a.closers, func() { _ = w.Close() })
	rel, err := relay.New(relay.Config{Logger: a.log, Registerer: a.reg}, a.store, w)
	if err != nil {
		return err
	}
	cons, err := wmsevents.New(wmsevents.Config{
		Brokers: brokers, GroupID: consumerGroup(a.cfg.DatabaseURL), Logger: a.log, Registerer: a.reg,
	}, f)
	if err != nil {
		return err
	}
	a.workers["oms.relay: publish outbox"] = rel.Run
	a.workers["oms.wmsevents: consume warehouse events"] = cons.Run
	a.workers["oms.fulfillment: expire unpaid orders"] = f.RunExpiry
	return nil
}

// consumerGroup names the wms.events consumer group of a deployment after
// its database: every omsd instance on one database shares the partitions,
// and deployments (or test servers) with their own database never consume
// each other's events from a shared broker. A database URL without a
// database name gives "omsd".
func consumerGroup(databaseURL string) string {
	name := ""
	if u, err := url.Parse(databaseURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		name = strings.Trim(u.Path, "/")
	} else {
		for _, kv := range strings.Fields(databaseURL) {
			if v, ok := strings.CutPrefix(kv, "dbname="); ok {
				name = v
			}
		}
	}
	if name == "" {
		return "omsd"
	}
	return "omsd." + name
}
