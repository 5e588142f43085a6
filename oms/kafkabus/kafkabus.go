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
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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

// Dead-letter headers: a dead-lettered message keeps the original key,
// value and headers, and gains these.
const (
	HeaderDLQReason    = "dlq.reason"    // a short label: malformed, invalid, unknown_shipment, conflict
	HeaderDLQError     = "dlq.error"     // the error text (no payload data)
	HeaderDLQTopic     = "dlq.topic"     // where the message was consumed from
	HeaderDLQPartition = "dlq.partition" // its partition, decimal
	HeaderDLQOffset    = "dlq.offset"    // its offset, decimal
	HeaderDLQTime      = "dlq.time"      // when it was dead-lettered, RFC 3339 UTC
)

// maxDLQError bounds the error header.
const maxDLQError = 1000

// DeadLetter returns the message to write to a dead-letter topic for m,
// which failed for good with err: m's key, value and headers (earlier dlq.*
// headers dropped), and the dlq.* headers. The topic is the writer's.
func DeadLetter(m kafka.Message, reason string, err error, at time.Time) kafka.Message {
	msg := ""
	if err != nil {
		msg = strings.ToValidUTF8(err.Error(), "?")
		for len(msg) > maxDLQError {
			_, n := utf8.DecodeLastRuneInString(msg)
			msg = msg[:len(msg)-n]
		}
	}
	hs := make([]kafka.Header, 0, len(m.Headers)+6)
	for _, h := range m.Headers {
		if !strings.HasPrefix(h.Key, "dlq.") {
			hs = append(hs, h)
		}
	}
	hs = append(hs,
		kafka.Header{Key: HeaderDLQReason, Value: []byte(reason)},
		kafka.Header{Key: HeaderDLQError, Value: []byte(msg)},
		kafka.Header{Key: HeaderDLQTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
		kafka.Header{Key: HeaderDLQTime, Value: []byte(at.UTC().Format(time.RFC3339Nano))},
	)
	return kafka.Message{Key: m.Key, Value: m.Value, Headers: hs}
}

// Header returns the value of a message's last header named key.
func Header(m kafka.Message, key string) (string, bool) {
	for i := len(m.Headers) - 1; i >= 0; i-- {
		if m.Headers[i].Key == key {
			return string(m.Headers[i].Value), true
		}
	}
	return "", false
}
