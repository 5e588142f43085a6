package oms

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/sourcing"
)

// AdminStore is what the admin service needs of the SQL store.
type AdminStore interface {
	PutNode(ctx context.Context, n Node) (bool, error)
	GetNode(ctx context.Context, id string) (Node, error)
	ListNodes(ctx context.Context) ([]Node, error)
	SetStock(ctx context.Context, node, sku string, onHand, safety int64) error
	PutRules(ctx context.Context, stamp func(version int64) ([]byte, error)) (int64, error)
	PutPromotion(ctx context.Context, p Promotion) error
	TransitionOrder(ctx context.Context, id string, fn func(o *Order) ([]OutboxEvent, error)) (*Order, error)
}

// StockAdmin is what the admin service needs of the inventory engine.
type StockAdmin interface {
	SetStock(ctx context.Context, node, sku string, onHand, safety int64) (inventory.Level, error)
	Levels(ctx context.Context, keys []inventory.Key) ([]inventory.Level, error)
	Confirm(ctx context.Context, node, holdID string) error
}

// NodeLoader loads a node's counters from the ledger into the stock engine
// (a new node is "not ready" until loaded).
type NodeLoader interface {
	Rebuild(ctx context.Context, nodes ...string) error
}

// Admin serves the admin API: nodes, stock snapshots, rules, promotions,
// simulation and hold release.
type Admin struct {
	store   AdminStore
	stock   StockAdmin
	loader  NodeLoader
	catalog *CatalogCache
	log     *slog.Logger
	Now     func() time.Time
}

// NewAdmin builds the admin service.
func NewAdmin(store AdminStore, stock StockAdmin, loader NodeLoader, catalog *CatalogCache, log *slog.Logger) *Admin {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Admin{store: store, stock: stock, loader: loader, catalog: catalog, log: log, Now: time.Now}
}

// PutNode validates and stores a node, loads its counters, and refreshes
// the catalog. created reports a new node.
func (a *Admin) PutNode(ctx context.Context, n Node) (bool, error) {
	if err := n.Validate(); err != nil {
		return false, err
	}
	created, err := a.store.PutNode(ctx, n)
	if err != nil {
		return false, err
	}
	if created {
		if err := a.loader.Rebuild(ctx, n.ID); err != nil {
			return created, unavailable("the node is stored but its stock is not loaded yet", err)
		}
	}
	return created, a.catalog.Refresh(ctx)
}

// GetNode returns one node.
func (a *Admin) GetNode(ctx context.Context, id string) (Node, error) {
	return a.store.GetNode(ctx, id)
}

// ListNodes returns every node.
func (a *Admin) ListNodes(ctx context.Context) ([]Node, error) { return a.store.ListNodes(ctx) }

// StockSnapshot is the body of PUT /v1/inventory/{node}/{sku}.
type StockSnapshot struct {
	OnHand      *int64 `json:"on_hand"`
	SafetyStock int64  `json:"safety_stock"`
}

// LevelView is a stock level as the API shows it.
type LevelView struct {
	NodeID      string `json:"node_id"`
	SKU         string `json:"sku,omitempty"`
	OnHand      int64  `json:"on_hand"`
	Reserved    int64  `json:"reserved"`
	SafetyStock int64  `json:"safety_stock"`
	Available   int64  `json:"available"`
	// Damaged counts returned units received damaged (not sellable, not in
	// on hand); only in GET /v1/inventory/{sku}.
	Damaged *int64 `json:"damaged,omitempty"`
}

// DamagedStock is a store that counts damaged returned units per node.
type DamagedStock interface {
	Damaged(ctx context.Context, sku string) (map[string]int64, error)
}

func levelView(l inventory.Level, withSKU bool) LevelView {
	v := LevelView{NodeID: l.Node, OnHand: l.OnHand, Reserved: l.Reserved, SafetyStock: l.Safety, Available: l.Available}
	if withSKU {
		v.SKU = l.SKU
	}
	return v
}

// MaxStock bounds a snapshot's on hand.
const MaxStock = int64(1) << 40

// SetStock records an absolute snapshot in the SQL ledger, then applies it
// to the live counters.
func (a *Admin) SetStock(ctx context.Context, node, sku string, s StockSnapshot) (LevelView, error) {
	var fs []FieldError
	if _, ok := a.catalog.Node(node); !ok {
		if _, err := a.store.GetNode(ctx, node); err != nil {
			return LevelView{}, Errorf(KindNotFound, SlugNotFound, "node %q does not exist", node)
		}
	}
	if !skuPattern.MatchString(sku) {
		fs = append(fs, FieldError{"sku", "must be 1-64 letters, digits, '.', '_', '/' or '-'"})
	}
	if s.OnHand == nil || *s.OnHand < 0 || *s.OnHand > MaxStock {
		fs = append(fs, FieldError{"on_hand", "is required: a non-negative number of units"})
	}
	if s.SafetyStock < 0 || s.SafetyStock > MaxStock {
		fs = append(fs, FieldError{"safety_stock", "must not be negative"})
	}
	if len(fs) > 0 {
		return LevelView{}, Invalid("the stock snapshot is not valid", fs...)
	}
	if err := a.store.SetStock(ctx, node, sku, *s.OnHand, s.SafetyStock); err != nil {
		return LevelView{}, err
	}
	l, err := a.stock.SetStock(ctx, node, sku, *s.OnHand, s.SafetyStock)
	if err != nil {
		return LevelView{}, stockErr(err)
	}
	return levelView(l, true), nil
}

// SKUStock is the body of GET /v1/inventory/{sku}.
type SKUStock struct {
	SKU       string      `json:"sku"`
	Available int64       `json:"available"`
	Nodes     []LevelView `json:"nodes"`
}

// StockBySKU returns the levels of sku at every node, in one round trip.
func (a *Admin) StockBySKU(ctx context.Context, sku string) (SKUStock, error) {
	if !skuPattern.MatchString(sku) {
		return SKUStock{}, Invalid("bad sku", FieldError{"sku", "must be 1-64 letters, digits, '.', '_', '/' or '-'"})
	}
	nodes, err := a.store.ListNodes(ctx)
	if err != nil {
		return SKUStock{}, err
	}
	keys := make([]inventory.Key, len(nodes))
	for i, n := range nodes {
		keys[i] = inventory.Key{Node: n.ID, SKU: sku}
	}
	out := SKUStock{SKU: sku, Nodes: []LevelView{}}
	if len(keys) == 0 {
		return out, nil
	}
	levels, err := a.stock.Levels(ctx, keys)
	if err != nil {
		return out, stockErr(err)
	}
	var damaged map[string]int64
	if ds, ok := a.store.(DamagedStock); ok {
		if damaged, err = ds.Damaged(ctx, sku); err != nil {
			return out, unavailable("damaged stock lookup failed", err)
		}
	}
	for _, l := range levels {
		v := levelView(l, false)
		if damaged != nil {
			d := damaged[l.Node]
			v.Damaged = &d
		}
		out.Nodes = append(out.Nodes, v)
		if l.Available > 0 {
			out.Available += l.Available
		}
	}
	return out, nil
}

// Rules returns the active rule set.
func (a *Admin) Rules() *sourcing.RuleSet { return a.catalog.Rules() }

// ActivateRules validates a rule-set document, stores it as the next
// version and makes it active at once on this instance (others follow
// within their catalog refresh period).
func (a *Admin) ActivateRules(ctx context.Context, doc []byte) (*sourcing.RuleSet, error) {
	rs, err := sourcing.ParseRules(doc)
	if err != nil {
		var ve *sourcing.ValidationError
		if errors.As(err, &ve) {
			e := Invalid("the rule set is not valid")
			for _, f := range ve.Errors {
				e.Fields = append(e.Fields, FieldError{Field: f.Field, Message: f.Message})
			}
			return nil, e
		}
		return nil, Invalid("the rule set is not valid", FieldError{Field: "", Message: err.Error()})
	}
	var stamped *sourcing.RuleSet
	_, err = a.store.PutRules(ctx, func(version int64) ([]byte, error) {
		stamped = rs.WithVersion(version)
		return json.Marshal(stamped)
	})
	if err != nil {
		return nil, err
	}
	if err := a.catalog.Refresh(ctx); err != nil {
		return stamped, err
	}
	return stamped, nil
}

// Simulate plans an order on fresh availability with the active rules (or
// a draft), reserving nothing.
func (a *Admin) Simulate(ctx context.Context, channel string, req *OrderRequest, draft *sourcing.RuleSet) (*sourcing.Result, error) {
	if err := RunChecks(DefaultChecks(), &CheckInput{Channel: channel, Req: req, Node: a.catalog.Node, Now: a.Now()}); err != nil {
		return nil, err
	}
	cands := a.catalog.Candidates()
	o := &Order{ID: OrderID(channel, req.ExternalID), Channel: channel, Lines: req.Lines, ShipTo: req.ShipTo, Fulfillment: req.Fulfillment}
	so := sourcingOrder(o, nil)
	avail, _, err := ReadAvailability(ctx, a.stock, stockKeys(cands, so))
	if err != nil {
		return nil, stockErr(err)
	}
	rules := a.catalog.Rules()
	if draft != nil {
		rules = draft
	}
	return sourcing.Plan(so, cands, avail, rules), nil
}

// PutPromotion validates and stores a promotion.
func (a *Admin) PutPromotion(ctx context.Context, p Promotion) error {
	var fs []FieldError
	if !ValidID(p.ID) {
		fs = append(fs, FieldError{"id", "must be 1-64 letters, digits, '.', '_' or '-'"})
	}
	if !skuPattern.MatchString(p.SKU) {
		fs = append(fs, FieldError{"sku", "must be a SKU"})
	}
	if p.PerCustomerLimit < 1 || p.PerCustomerLimit > MaxQty {
		fs = append(fs, FieldError{"per_customer_limit", "must be between 1 and 100000"})
	}
	if !p.EndsAt.After(p.StartsAt) {
		fs = append(fs, FieldError{"ends_at", "must be after starts_at"})
	}
	if len(fs) > 0 {
		return Invalid("the promotion is not valid", fs...)
	}
	if err := a.store.PutPromotion(ctx, p); err != nil {
		return err
	}
	return a.catalog.Refresh(ctx)
}

// ClearReview ends the review of an in-review (on_hold) order (see the
// lifecycle function ClearReview): a paid order is released to
// fulfillment (shipment.requested for each pending shipment), an unpaid
// one waits for its payment. Errors: KindConflict not-on-hold.
func (a *Admin) ClearReview(ctx context.Context, id string) (*Order, error) {
	var ch Change
	return a.store.TransitionOrder(ctx, id, step(&ch, func(o *Order) (Change, error) {
		return ClearReview(o, a.Now().UTC())
	}))
}
