package localstack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// The topics of the v1 contract (shared with cmd/omsd and the tests).
const (
	TopicShipments = "oms.shipments" // key = node id
	TopicWMSEvents = "wms.events"    // key = shipment id
	TopicOrders    = "oms.orders"    // key = order id
	TopicReturns   = "oms.returns"   // key = order id
	// TopicWMSEventsDLQ receives the warehouse events omsd cannot apply,
	// ever (malformed, unknown shipment, contradicting the state): the
	// original key and value, with dlq.* headers saying why and whence.
	TopicWMSEventsDLQ = "wms.events.dlq"
)

// Topics lists every topic omsd uses. (The relay has no dead-letter topic:
// a row the broker refuses is set aside in the outbox table itself.)
var Topics = []string{TopicShipments, TopicWMSEvents, TopicOrders, TopicReturns, TopicWMSEventsDLQ}

// KafkaConfig configures the in-process broker. The zero value is an
// in-memory single broker with the contract topics at 8 partitions.
type KafkaConfig struct {
	// DataDir keeps the broker's log on disk so that a restart on the same
	// directory loses nothing. Empty: in memory.
	DataDir string
	// SyncWrites fsyncs every produced batch (only with DataDir).
	SyncWrites bool
	// Partitions per topic; default 8.
	Partitions int32
	// Topics to seed; default Topics.
	Topics []string
	// Brokers is the number of brokers, each on its own port, sharing the
	// partitions as leaders; default 1.
	Brokers int
}

// Kafka is franz-go's kfake broker, reached over TCP like any broker.
type Kafka struct {
	cfg     KafkaConfig
	addrs   []string
	ports   []int
	mu      sync.Mutex
	cluster *kfake.Cluster // nil while stopped
}

// Brokers are the host:port addresses of the broker (the same after a
// Stop and Start).
func (k *Kafka) Brokers() []string { return append([]string(nil), k.addrs...) }

// Cluster exposes the fake for fault injection in tests (nil while
// stopped).
func (k *Kafka) Cluster() *kfake.Cluster {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cluster
}

func (k *Kafka) opts() []kfake.Opt {
	opts := []kfake.Opt{
		kfake.NumBrokers(k.cfg.Brokers),
		kfake.SeedTopics(k.cfg.Partitions, k.cfg.Topics...),
		kfake.DefaultNumPartitions(int(k.cfg.Partitions)),
		kfake.AllowAutoTopicCreation(),
		kfake.GroupMinSessionTimeout(time.Second),
	}
	if k.cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(k.cfg.DataDir))
		if k.cfg.SyncWrites {
			opts = append(opts, kfake.SyncWrites())
		}
	}
	return opts
}

// StartKafka starts the in-process broker on a free loopback port and waits
// until it accepts connections.
func StartKafka(ctx context.Context, cfg KafkaConfig, log *slog.Logger) (*Kafka, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 8
	}
	if len(cfg.Topics) == 0 {
		cfg.Topics = Topics
	}
	if cfg.Brokers <= 0 {
		cfg.Brokers = 1
	}
	k := &Kafka{cfg: cfg}
	c, err := kfake.NewCluster(k.opts()...)
	if err != nil {
		return nil, fmt.Errorf("localstack: kafka broker: %w", err)
	}
	k.cluster = c
	k.addrs = c.ListenAddrs()
	for _, a := range k.addrs {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("localstack: kafka broker address %q: %w", a, err)
		}
		n, _ := strconv.Atoi(port)
		k.ports = append(k.ports, n)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, a := range k.Brokers() {
		if err := waitTCP(wctx, a); err != nil {
			c.Close()
			return nil, err
		}
	}
	log.Info("kafka broker ready", "brokers", k.Brokers(), "data_dir", cfg.DataDir)
	return k, nil
}

// Close stops the broker (flushing its log when it has a DataDir).
func (k *Kafka) Close() error {
	if k == nil {
		return nil
	}
	return k.Stop()
}
