package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// CreateChannel stores a channel with the hash of its API key. An existing
// id is a KindConflict error.
func (s *Store) CreateChannel(ctx context.Context, c oms.Channel, keyHash []byte) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO channels (id, name, key_hash, rate_per_sec, burst) VALUES ($1, $2, $3, $4, $5)`,
		c.ID, c.Name, keyHash, c.RatePerSec, c.Burst)
	if IsUniqueViolation(err) {
		return oms.Errorf(oms.KindConflict, oms.SlugChannelExists, "channel %q already exists", c.ID)
	}
	if err != nil {
		return fmt.Errorf("pgstore: create channel: %w", err)
	}
	return nil
}

// ChannelByKeyHash finds the channel of an API key hash; oms.ErrNotFound
// when none.
func (s *Store) ChannelByKeyHash(ctx context.Context, hash []byte) (oms.Channel, error) {
	var c oms.Channel
	err := s.pool.QueryRow(ctx, `SELECT id, name, rate_per_sec, burst FROM channels WHERE key_hash = $1`, hash).
		Scan(&c.ID, &c.Name, &c.RatePerSec, &c.Burst)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, oms.ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("pgstore: channel by key: %w", err)
	}
	return c, nil
}

// PutNode creates or replaces a node; created reports which.
func (s *Store) PutNode(ctx context.Context, n oms.Node) (created bool, err error) {
	doc, err := json.Marshal(n)
	if err != nil {
		return false, err
	}
	err = s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var exists int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM nodes WHERE id = $1`, n.ID).Scan(&exists); err != nil {
			return err
		}
		created = exists == 0
		_, err := tx.Exec(ctx, `INSERT INTO nodes (id, doc, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at`, n.ID, doc, s.Now())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("pgstore: put node: %w", err)
	}
	return created, nil
}

// GetNode returns one node or oms.ErrNotFound.
func (s *Store) GetNode(ctx context.Context, id string) (oms.Node, error) {
	var n oms.Node
	var doc []byte
	err := s.pool.QueryRow(ctx, `SELECT doc FROM nodes WHERE id = $1`, id).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return n, oms.ErrNotFound
	}
	if err != nil {
		return n, fmt.Errorf("pgstore: get node: %w", err)
	}
	return n, json.Unmarshal(doc, &n)
}

// ListNodes returns every node ordered by id.
func (s *Store) ListNodes(ctx context.Context) ([]oms.Node, error) {
	rows, err := s.pool.Query(ctx, `SELECT doc FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list nodes: %w", err)
	}
	defer rows.Close()
	out := []oms.Node{}
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		var n oms.Node
		if err := json.Unmarshal(doc, &n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Nodes returns every node id (inventory.Ledger).
func (s *Store) Nodes(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: node ids: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgstore: node ids: %w", err)
	}
	return ids, nil
}

// SetStock records an absolute snapshot of (node, sku) in the ledger.
func (s *Store) SetStock(ctx context.Context, node, sku string, onHand, safety int64) error {
	now := s.Now()
	err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO stock (node_id, sku, on_hand, safety_stock, updated_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (node_id, sku) DO UPDATE SET on_hand = excluded.on_hand, safety_stock = excluded.safety_stock, updated_at = excluded.updated_at`,
			node, sku, onHand, safety, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO stock_ledger (id, node_id, sku, kind, qty, on_hand_after, at) VALUES ($1, $2, $3, 'snapshot', $4, $4, $5)`,
			uuid.New(), node, sku, onHand, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: set stock: %w", err)
	}
	return nil
}
