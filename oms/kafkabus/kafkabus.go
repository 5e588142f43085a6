// Package kafkabus wraps segmentio/kafka-go with the settings omsd needs,
// because several of kafka-go's defaults are wrong for an OMS
// (ARCHITECTURE.md, "Kafka"):
//
//   - Writers wait for every in-sync replica (RequiredAcks = RequireAll; the
//     default is RequireNone), hash the message key to choose the partition
//     (so every event of one order, node or shipment stays in order), and
//     flush batches after milliseconds, not the default second.
//   - Readers join a consumer group and fetch without committing; the
//     caller commits a message only after it has processed it. Delivery is
//     therefore at least once: every message carries an event id and every
//     consumer deduplicates.
package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// WriterConfig configures a Writer. The zero value is usable once Brokers
// is set.
type WriterConfig struct {
	Brokers []string
	// Topic, if set, is the only topic of the writer; otherwise every
	// message names its topic.
	Topic string
	// BatchTimeout bounds how long a partial batch waits; default 2ms.
	BatchTimeout time.Duration
	// BatchSize is the maximum messages per batch; default 500.
	BatchSize int
	// WriteTimeout bounds one write; default 10s.
	WriteTimeout time.Duration
	// MaxAttempts per batch; default 5.
	MaxAttempts int
}

// NewWriter returns a kafka-go Writer with RequireAll acks, the key-hash
// balancer and a millisecond batch timeout.
func NewWriter(cfg WriterConfig) (*kafka.Writer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafkabus: no brokers")
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 2 * time.Millisecond
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	return &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        cfg.Topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: cfg.BatchTimeout,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   8 << 20,
		WriteTimeout: cfg.WriteTimeout,
		MaxAttempts:  cfg.MaxAttempts,
		// Topics are created by deployment (the local stack seeds them);
		// a typo must fail, not create a topic.
		AllowAutoTopicCreation: false,
	}, nil
}

// ReaderConfig configures a consumer-group Reader.
type ReaderConfig struct {
	Brokers []string
	GroupID string
	Topic   string
	// MinBytes/MaxBytes of a fetch; defaults 1 and 10 MiB.
	MaxBytes int
	// MaxWait of a fetch; default 250ms.
	MaxWait time.Duration
	// StartOffset for a group without a committed offset: kafka.FirstOffset
	// (default) or kafka.LastOffset.
	StartOffset int64
	// SessionTimeout of the group; default 10s. HeartbeatInterval 1s.
	SessionTimeout time.Duration
}

// NewReader returns a consumer-group reader that never commits by itself:
// call FetchMessage, process, then CommitMessages.
func NewReader(cfg ReaderConfig) (*kafka.Reader, error) {
	if len(cfg.Brokers) == 0 || cfg.GroupID == "" || cfg.Topic == "" {
		return nil, errors.New("kafkabus: reader needs brokers, a group id and a topic")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 10 << 20
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 250 * time.Millisecond
	}
	if cfg.StartOffset == 0 {
		cfg.StartOffset = kafka.FirstOffset
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:               cfg.Brokers,
		GroupID:               cfg.GroupID,
		Topic:                 cfg.Topic,
		MinBytes:              1,
		MaxBytes:              cfg.MaxBytes,
		MaxWait:               cfg.MaxWait,
		StartOffset:           cfg.StartOffset,
		CommitInterval:        0, // synchronous commits: CommitMessages returns once committed
		SessionTimeout:        cfg.SessionTimeout,
		HeartbeatInterval:     time.Second,
		RebalanceTimeout:      10 * time.Second,
		JoinGroupBackoff:      500 * time.Millisecond,
		ReadBackoffMin:        50 * time.Millisecond,
		ReadBackoffMax:        500 * time.Millisecond,
		WatchPartitionChanges: true,
	}), nil
}

// Handler processes one message. Returning an error stops Consume without
// committing the message, so it is delivered again.
type Handler func(ctx context.Context, m kafka.Message) error

// Consume fetches messages, calls h, and commits each message after h
// succeeds, until ctx ends (returns nil) or h fails. It closes r.
func Consume(ctx context.Context, r *kafka.Reader, h Handler, log *slog.Logger) error {
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("kafkabus: fetch: %w", err)
		}
		if err := h(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("kafkabus: handle %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("kafkabus: commit: %w", err)
		}
	}
}

// Ping checks that a broker answers a metadata request.
func Ping(ctx context.Context, brokers []string) error {
	var last error
	for _, b := range brokers {
		d := kafka.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			last = err
			continue
		}
		_, err = c.Brokers()
		c.Close()
		if err == nil {
			return nil
		}
		last = err
	}
	return fmt.Errorf("kafkabus: no broker answers: %w", last)
}
