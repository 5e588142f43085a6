package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omsd/omsd/oms"
)

// ActiveRules returns the highest stored rule-set version and its
// document; version 0 and nil when none is stored.
func (s *Store) ActiveRules(ctx context.Context) (int64, []byte, error) {
	var v int64
	var doc []byte
	err := s.pool.QueryRow(ctx, `SELECT version, doc FROM rule_sets ORDER BY version DESC LIMIT 1`).Scan(&v, &doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("pgstore: active rules: %w", err)
	}
	return v, doc, nil
}

// PutRules stores doc as the next version and returns it. The version is
// computed in the transaction: two concurrent activations get distinct
// versions (the loser's insert conflicts and is retried).
func (s *Store) PutRules(ctx context.Context, stamp func(version int64) ([]byte, error)) (int64, error) {
	var version int64
	err := s.Tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM rule_sets`).Scan(&version); err != nil {
			return err
		}
		doc, err := stamp(version)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO rule_sets (version, doc) VALUES ($1, $2)`, version, doc)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: put rules: %w", err)
	}
	return version, nil
}

// PutPromotion creates or replaces a promotion.
func (s *Store) PutPromotion(ctx context.Context, p oms.Promotion) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO promotions (id, sku, per_customer_limit, starts_at, ends_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET sku = excluded.sku, per_customer_limit = excluded.per_customer_limit,
		starts_at = excluded.starts_at, ends_at = excluded.ends_at`, p.ID, p.SKU, p.PerCustomerLimit, p.StartsAt, p.EndsAt)
	if err != nil {
		return fmt.Errorf("pgstore: put promotion: %w", err)
	}
	return nil
}

// Promotions returns the promotions that have not ended by now.
func (s *Store) Promotions(ctx context.Context, now time.Time) ([]oms.Promotion, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, sku, per_customer_limit, starts_at, ends_at FROM promotions WHERE ends_at > $1 ORDER BY id`, now)
	if err != nil {
		return nil, fmt.Errorf("pgstore: promotions: %w", err)
	}
	defer rows.Close()
	var out []oms.Promotion
	for rows.Next() {
		var p oms.Promotion
		if err := rows.Scan(&p.ID, &p.SKU, &p.PerCustomerLimit, &p.StartsAt, &p.EndsAt); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
