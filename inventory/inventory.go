package inventory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on the input of one call. They keep every Redis script's work
// bounded (Redis cannot interrupt a script once it has written)
// and keep quantities inside the integers that Lua's doubles hold exactly.
const (
	// MaxLines is the most lines (distinct SKUs) one hold may have.
	MaxLines = 500
	// MaxQty is the largest quantity of one line and the largest on hand or
	// safety stock (2^50, well below the 2^53 that Lua's doubles hold
	// exactly even after additions).
	MaxQty = int64(1) << 50
	// MaxIDLen is the longest node id, SKU or hold id, in bytes.
	MaxIDLen = 256
)

// Line is a quantity of one SKU.
type Line struct {
	SKU string
	Qty int64
}

// Key names the stock of one SKU at one fulfillment node.
type Key struct {
	Node, SKU string
}

// Level is the stock of one (node, SKU).
//
// Available = OnHand - Reserved - Safety. Reservations never drive it below
// zero; it is shown negative only when a snapshot lowered on hand, or raised
// safety stock, below what was already reserved.
type Level struct {
	Node, SKU string
	OnHand    int64
	Reserved  int64
	Safety    int64
	Available int64
}

// NewLevel returns the level with Available computed.
func NewLevel(node, sku string, onHand, reserved, safety int64) Level {
	return Level{Node: node, SKU: sku, OnHand: onHand, Reserved: reserved, Safety: safety,
		Available: onHand - reserved - safety}
}

// Hold is a reservation of all Lines at Node, keyed by ID (the shipment
// id). Hold ids are scoped by node: the same id at two nodes names two
// holds. A zero Deadline means the hold never expires (the order is paid).
//
// Owner names the instance that took the hold (its OwnerID; see
// OwnedStore): when that instance stops beating, the reconciler releases
// within seconds its holds that no stored shipment owns. Empty means no
// owner (holds a rebuild restored from the ledger, or taken by a tool):
// those are released as orphans only after the reconciler's grace.
type Hold struct {
	ID       string
	Node     string
	Lines    []Line
	Deadline time.Time
	Owner    string
}

// HoldState is where a hold is in its life. Once closed (released,
// committed or expired) a hold never opens again, and its id cannot be
// reused for as long as the store remembers it.
type HoldState string

// The states of a hold.
const (
	HoldOpen      HoldState = "open"
	HoldReleased  HoldState = "released"
	HoldCommitted HoldState = "committed"
	HoldExpired   HoldState = "expired"
)

// Errors. Stores wrap them (errors.Is works); the typed errors below carry
// details and unwrap to them.
var (
	// ErrInsufficient: a line asked for more than is available. Returned as
	// a *ShortError.
	ErrInsufficient = errors.New("inventory: insufficient stock")
	// ErrNotReady: the node's counters are not loaded (Redis lost its data or
	// the node was never rebuilt). Nothing was written; intake answers 503
	// and the rebuild restores the node from the SQL ledger.
	ErrNotReady = errors.New("inventory: stock not loaded")
	// ErrLimitExceeded: a customer's purchases of a promoted SKU would pass
	// the promotion's limit. Returned as a *LimitError.
	ErrLimitExceeded = errors.New("inventory: purchase limit exceeded")
	// ErrUnknownHold: no hold with this id is open at the node, and the store
	// does not remember it being closed.
	ErrUnknownHold = errors.New("inventory: unknown hold")
	// ErrHoldClosed: the hold was closed in a way that forbids the operation
	// (reserve again with a closed id, commit a released hold, release a
	// committed one, confirm an expired one). Returned as a *HoldClosedError.
	ErrHoldClosed = errors.New("inventory: hold closed")
	// ErrHoldConflict: a hold id was repeated with other lines. The first
	// reservation stands.
	ErrHoldConflict = errors.New("inventory: hold id reused with other lines")
	// ErrInvalid: an argument failed validation (empty id, quantity out of
	// range, too many lines, a brace in a node id...).
	ErrInvalid = errors.New("inventory: invalid argument")
)

// ShortError says which line could not be reserved. It unwraps to
// ErrInsufficient.
type ShortError struct {
	Node, SKU string
	Want      int64 // quantity asked for
	Have      int64 // available at the time, never negative
}

func (e *ShortError) Error() string {
	return fmt.Sprintf("inventory: insufficient stock of %q at %q: want %d, have %d", e.SKU, e.Node, e.Want, e.Have)
}

// Unwrap returns ErrInsufficient.
func (e *ShortError) Unwrap() error { return ErrInsufficient }

// NotReadyError names the nodes whose counters are not loaded. It unwraps
// to ErrNotReady.
type NotReadyError struct {
	Nodes []string
}

func (e *NotReadyError) Error() string {
	return "inventory: stock not loaded at " + strings.Join(e.Nodes, ", ")
}

// Unwrap returns ErrNotReady.
func (e *NotReadyError) Unwrap() error { return ErrNotReady }

// HoldClosedError says in which state a hold was found closed. It unwraps to
// ErrHoldClosed.
type HoldClosedError struct {
	Node, ID string
	State    HoldState
}

func (e *HoldClosedError) Error() string {
	return fmt.Sprintf("inventory: hold %q at %q is already %s", e.ID, e.Node, e.State)
}

// Unwrap returns ErrHoldClosed.
func (e *HoldClosedError) Unwrap() error { return ErrHoldClosed }

// LimitError says by how much a purchase limit would be passed. It carries
// no customer id on purpose: errors end up in logs. It unwraps to
// ErrLimitExceeded.
type LimitError struct {
	Promo, SKU string
	Limit      int64 // the promotion's limit per customer
	Taken      int64 // already taken by the customer
	Want       int64 // asked for by this order
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("inventory: purchase limit of %q in promotion %q exceeded: limit %d, taken %d, want %d",
		e.SKU, e.Promo, e.Limit, e.Taken, e.Want)
}

// Unwrap returns ErrLimitExceeded.
func (e *LimitError) Unwrap() error { return ErrLimitExceeded }

// Store keeps the live stock counters and the holds against them.
//
// Every implementation passes the contract suite in inventory/stocktest.
// A node is not ready until it was rebuilt (see Rebuild); on a node that is
// not ready every write returns an error matching ErrNotReady and changes
// nothing. A call that the client library repeats after a lost reply (as
// go-redis does) changes the data once and answers as the first execution
// did (Reserve answers nil for its own repeat).
type Store interface {
	// SetStock applies an absolute WMS/ERP snapshot of on hand and safety
	// stock; reserved is kept. Errors: ErrInvalid, ErrNotReady.
	SetStock(ctx context.Context, node, sku string, onHand, safety int64) (Level, error)
	// Reserve reserves every line of h at h.Node atomically, all or nothing.
	// Lines with the same SKU count together. Hold ids are single-use: a
	// repeat of an open hold's id with the same lines returns nil and
	// reserves nothing more (go-redis retries a script whose reply was
	// lost); with other lines it returns ErrHoldConflict; the id of a closed
	// hold returns a *HoldClosedError. A failed attempt leaves no trace, so
	// its repeat is judged afresh. Errors: *ShortError (ErrInsufficient),
	// ErrNotReady, ErrHoldConflict, ErrHoldClosed, ErrInvalid.
	Reserve(ctx context.Context, h Hold) error
	// Release gives the hold's lines back to available. It reports true only
	// the first time; a hold already released or expired gives (false, nil);
	// a committed one gives ErrHoldClosed (the goods shipped: too late to
	// cancel); an id never seen gives ErrUnknownHold. Errors also: ErrNotReady.
	Release(ctx context.Context, node, holdID string) (released bool, err error)
	// Commit records the shipment of the hold: on hand and reserved both
	// drop by its lines. True only the first time; a committed hold gives
	// (false, nil); a released or expired one ErrHoldClosed; an unknown one
	// ErrUnknownHold. Errors also: ErrNotReady.
	Commit(ctx context.Context, node, holdID string) (committed bool, err error)
	// Confirm clears the hold's deadline (the order was paid), so that the
	// sweeper never expires it. Confirming a committed hold is a no-op; a
	// released or expired hold gives ErrHoldClosed; an unknown one
	// ErrUnknownHold. Errors also: ErrNotReady.
	Confirm(ctx context.Context, node, holdID string) error
	// Levels returns the level of every key, in order, in one round trip.
	// Unknown SKUs have zero levels. If some nodes are not ready it returns
	// the levels (those of the not-ready nodes zero) together with a
	// *NotReadyError naming them: a caller may source around those nodes,
	// but must not read their zeros as "out of stock".
	Levels(ctx context.Context, keys []Key) ([]Level, error)
	// SweepExpired releases, as expired, at most limit holds whose deadline
	// is at or before now (limit <= 0 means DefaultSweepLimit), and returns
	// their ids. Each hold is released by exactly one call, even with several
	// sweepers running at once, so the caller that gets an id back owns the
	// follow-up (the order.expired event). Hold ids are only unique per node:
	// give holds globally unique ids (shipment ids) where the sweeper's
	// answer must name them unambiguously. Nodes that are not ready are
	// skipped.
	SweepExpired(ctx context.Context, now time.Time, limit int) (released []string, err error)
}

// Restocker takes returned units back into on hand: an after-sales return
// received at a node books its sellable units in SQL first (a stock row's
// on hand and a stock_ledger row of kind 'return' whose ref is the restock
// id, in one transaction), then tells the store with Restock. Every
// Rebuildable store implements it (redisstock, memstock).
//
// Restock ids are single-use: one per (return, SKU), never reused for
// another restock. The store remembers the ids it applied for
// RestockMemory, and a rebuild restores the ids of the ledger's last
// RestockWindow as applied (their units are in the ledger's on hand), so
// that a repeat is a no-op. Call Restock only after the SQL commit, and
// retry it for a few minutes at most: past RestockWindow the reconciler no
// longer applies a missing restock by its id, and after a data loss and a
// rebuild the store no longer knows an older one (its units came back with
// the rebuild's on hand, a late call would count them again).
type Restocker interface {
	// Restock adds qty to on hand of (node, sku) once per id: it reports
	// true the first time, and a repeat of the id (with any SKU or
	// quantity) changes nothing and reports (false, nil). Reserved and
	// safety stock are kept; the SKU's stock version (see NodeSnapshot) is
	// not moved: a restock is a relative change, as a shipment is. A
	// repeat by the client library after a lost reply answers as the first
	// call did. Errors: ErrNotReady (a node that is not ready or being
	// rebuilt: nothing written; the reconciler applies it once the node is
	// ready, or the rebuild's on hand already has it), ErrInvalid (qty
	// outside [1, MaxQty], bad node, SKU or id).
	Restock(ctx context.Context, node, id, sku string, qty int64) (applied bool, err error)
}

// RestockMemory is how long a store remembers an applied restock id by
// default (redisstock and memstock: Config.RestockMemory). It must stay
// well above RestockWindow, the span of the ledger's restocks that the
// reconciler and the rebuild compare with it.
const RestockMemory = time.Hour

// DefaultSweepLimit is the number of holds SweepExpired releases at most
// when called with limit <= 0.
const DefaultSweepLimit = 1000

// ValidateNode checks a node id. Node ids may not contain braces: they
// would break the Redis hash tag that keeps a node's keys in one slot.
func ValidateNode(node string) error {
	if err := validateID("node", node); err != nil {
		return err
	}
	if strings.ContainsAny(node, "{}") {
		return fmt.Errorf("%w: node id %q contains '{' or '}'", ErrInvalid, node)
	}
	return nil
}

// ValidateSKU checks a SKU: non-empty, valid UTF-8 (holds are stored as
// JSON, which cannot carry other bytes unchanged), at most MaxIDLen bytes.
func ValidateSKU(sku string) error { return validateID("sku", sku) }

// ValidateHoldID checks a hold id like a SKU.
func ValidateHoldID(id string) error { return validateID("hold id", id) }

func validateID(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case len(s) > MaxIDLen:
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, what, MaxIDLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	}
	return nil
}

// ValidateRestockID checks a restock id like a SKU.
func ValidateRestockID(id string) error { return validateID("restock id", id) }

// ValidateRestock checks the arguments of Restock.
func ValidateRestock(node, id, sku string, qty int64) error {
	if err := ValidateNode(node); err != nil {
		return err
	}
	if err := ValidateRestockID(id); err != nil {
		return err
	}
	if err := ValidateSKU(sku); err != nil {
		return err
	}
	if qty <= 0 || qty > MaxQty {
		return fmt.Errorf("%w: restock quantity %d outside [1, %d]", ErrInvalid, qty, MaxQty)
	}
	return nil
}

// ValidateStock checks the arguments of SetStock.
func ValidateStock(node, sku string, onHand, safety int64) error {
	if err := ValidateNode(node); err != nil {
		return err
	}
	if err := ValidateSKU(sku); err != nil {
		return err
	}
	if onHand < 0 || onHand > MaxQty || safety < 0 || safety > MaxQty {
		return fmt.Errorf("%w: on hand %d or safety %d outside [0, %d]", ErrInvalid, onHand, safety, MaxQty)
	}
	return nil
}

// NormalizeHold validates h and returns it with lines of the same SKU
// merged (in order of first appearance), so that the all-or-nothing check
// sees the total asked of each SKU. The input is not modified.
func NormalizeHold(h Hold) (Hold, error) {
	if err := ValidateNode(h.Node); err != nil {
		return h, err
	}
	if err := ValidateHoldID(h.ID); err != nil {
		return h, err
	}
	if h.Owner != "" {
		if err := ValidateOwner(h.Owner); err != nil {
			return h, err
		}
	}
	if len(h.Lines) == 0 {
		return h, fmt.Errorf("%w: hold %q has no lines", ErrInvalid, h.ID)
	}
	lines := make([]Line, 0, len(h.Lines))
	index := make(map[string]int, len(h.Lines))
	for _, l := range h.Lines {
		if err := ValidateSKU(l.SKU); err != nil {
			return h, err
		}
		if l.Qty <= 0 || l.Qty > MaxQty {
			return h, fmt.Errorf("%w: quantity %d of %q outside [1, %d]", ErrInvalid, l.Qty, l.SKU, MaxQty)
		}
		if i, ok := index[l.SKU]; ok {
			lines[i].Qty += l.Qty
			if lines[i].Qty > MaxQty {
				return h, fmt.Errorf("%w: quantity of %q above %d", ErrInvalid, l.SKU, MaxQty)
			}
			continue
		}
		index[l.SKU] = len(lines)
		lines = append(lines, l)
	}
	if len(lines) > MaxLines {
		return h, fmt.Errorf("%w: %d lines, at most %d", ErrInvalid, len(lines), MaxLines)
	}
	h.Lines = lines
	return h, nil
}

// Units is the sum of the quantities of lines.
func Units(lines []Line) int64 {
	var n int64
	for _, l := range lines {
		n += l.Qty
	}
	return n
}

// SameLines reports whether a and b ask for the same quantity of every SKU,
// in any order. Both must be normalized (no SKU twice).
func SameLines(a, b []Line) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]int64, len(a))
	for _, l := range a {
		m[l.SKU] = l.Qty
	}
	for _, l := range b {
		if q, ok := m[l.SKU]; !ok || q != l.Qty {
			return false
		}
	}
	return true
}
