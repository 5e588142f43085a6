// Command wms-sim simulates the warehouse systems of omsd's fulfillment
// nodes: it answers the shipment requests of oms.shipments on wms.events
// (acknowledged, shipped after a delay, short-picked for a share, cancel
// honoured or refused). See package wmssim.
//
//	wms-sim --brokers 127.0.0.1:9092 --nodes WH-HZ,WH-SH --ship-after 2s --short-pick-share 0.02
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
	"strings"
	"syscall"
	"time"

	"github.com/omsd/omsd/oms/wmssim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "wms-sim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("wms-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := func(name, v string) string {
		if e := getenv(name); e != "" {
			return e
		}
		return v
	}
	brokers := fs.String("brokers", def("OMS_KAFKA_BROKERS", ""), "comma-separated Kafka bootstrap brokers (env OMS_KAFKA_BROKERS)")
	nodes := fs.String("nodes", "", "comma-separated node ids to serve; empty serves every node")
	shipAfter := fs.Duration("ship-after", 2*time.Second, "time from request to shipment")
	share := fs.Float64("short-pick-share", 0, "share of shipments short-picked (rejected), 0 to 1")
	receiveAfter := fs.Duration("receive-after", 0, "time from return.expected to return.received; 0 = ship-after")
	damaged := fs.Float64("return-damaged-share", 0.2, "share of returned units received damaged, 0 to 1")
	seed := fs.Int64("seed", 1, "seed of the short-pick and damaged choices")
	group := fs.String("group", "wms-sim", "consumer group of oms.shipments")
	level := fs.String("log.level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *brokers == "" {
		return errors.New("missing --brokers (OMS_KAFKA_BROKERS)")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		lvl = slog.LevelInfo
	}
	cfg := wmssim.Config{
		Brokers:        strings.Split(*brokers, ","),
		ShipAfter:      *shipAfter,
		ShortPickShare: *share,
		ReceiveAfter:   *receiveAfter,
		DamagedShare:   *damaged,
		Seed:           *seed,
		Group:          *group,
		Logger:         slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl})),
	}
	for _, n := range strings.Split(*nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			cfg.Nodes = append(cfg.Nodes, n)
		}
	}
	return wmssim.Run(ctx, cfg)
}
