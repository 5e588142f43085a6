package sourcing

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
)

// ReplayOrder is one past order to plan again, with the snapshot to plan it
// against. Orders may share one Nodes slice and one Avail (nothing is copied);
// ReadReplayOrders leaves both nil for the caller to set.
type ReplayOrder struct {
	Order Order        `json:"order"`
	Nodes []Node       `json:"nodes,omitempty"`
	Avail Availability `json:"-"`
}

// ReplayStats describes how one rule set plans the replayed orders.
type ReplayStats struct {
	Version   int64  `json:"version"`
	Name      string `json:"name,omitempty"`
	Orders    int    `json:"orders"`
	Fulfilled int    `json:"fulfilled"`
	Rejected  int    `json:"rejected"`
	Backorder int    `json:"backorder"`
	Hold      int    `json:"hold"`
	Shipments int    `json:"shipments"`
	// MeanShipments is shipments per order, over every order.
	MeanShipments float64 `json:"mean_shipments"`
	// SplitRate is the share of orders with more than one shipment.
	SplitRate float64 `json:"split_rate"`
	// MeanDistanceKm is the mean node-to-ship-to distance over the
	// shipments whose distance is known (KnownDistance of them).
	MeanDistanceKm float64 `json:"mean_distance_km"`
	KnownDistance  int     `json:"known_distance"`
}

// replayAcc gathers what ReplayStats needs beyond its counters.
type replayAcc struct {
	split   int
	distSum float64
}

// ReplayReport compares an active and a draft rule set over past orders.
type ReplayReport struct {
	Orders int         `json:"orders"`
	Active ReplayStats `json:"active"`
	Draft  ReplayStats `json:"draft"`
	// Differ counts the orders whose plans differ: another outcome, other
	// shipments (node, SKU, quantity; order of shipments ignored) or other
	// unfilled quantities.
	Differ int `json:"differ"`
	// DifferIDs lists the ids of the first MaxReplayDiffIDs such orders.
	DifferIDs []string `json:"differ_ids,omitempty"`
}

// MaxReplayDiffIDs caps ReplayReport.DifferIDs.
const MaxReplayDiffIDs = 100

// Replay plans every order with both rule sets and compares the plans. A
// nil rule set puts every order on hold (as Plan does).
func Replay(active, draft *RuleSet, orders []ReplayOrder) ReplayReport {
	rep := ReplayReport{Orders: len(orders)}
	stamp := func(st *ReplayStats, r *RuleSet) {
		if r != nil {
			st.Version, st.Name = r.Version, r.Name
		}
	}
	stamp(&rep.Active, active)
	stamp(&rep.Draft, draft)
	var accA, accD replayAcc
	var byID map[string]*Node
	var lastNodes []Node
	for i := range orders {
		ro := &orders[i]
		if len(ro.Nodes) == 0 || len(lastNodes) == 0 || &ro.Nodes[0] != &lastNodes[0] || len(ro.Nodes) != len(lastNodes) {
			byID = make(map[string]*Node, len(ro.Nodes))
			for j := range ro.Nodes {
				if _, dup := byID[ro.Nodes[j].ID]; !dup {
					byID[ro.Nodes[j].ID] = &ro.Nodes[j]
				}
			}
			lastNodes = ro.Nodes
		}
		a := Plan(&ro.Order, ro.Nodes, ro.Avail, active)
		d := Plan(&ro.Order, ro.Nodes, ro.Avail, draft)
		rep.Active.add(&accA, &ro.Order, a, byID)
		rep.Draft.add(&accD, &ro.Order, d, byID)
		if !SamePlan(a, d) {
			rep.Differ++
			if len(rep.DifferIDs) < MaxReplayDiffIDs {
				rep.DifferIDs = append(rep.DifferIDs, ro.Order.ID)
			}
		}
	}
	rep.Active.finish(&accA)
	rep.Draft.finish(&accD)
	return rep
}

func (st *ReplayStats) add(acc *replayAcc, o *Order, r *Result, byID map[string]*Node) {
	st.Orders++
	switch r.Outcome {
	case OutcomeFulfilled:
		st.Fulfilled++
	case OutcomeRejected:
		st.Rejected++
	case OutcomeBackorder:
		st.Backorder++
	case OutcomeHold:
		st.Hold++
	}
	st.Shipments += len(r.Shipments)
	if len(r.Shipments) > 1 {
		acc.split++
	}
	for _, s := range r.Shipments {
		if n := byID[s.NodeID]; n != nil {
			if d, ok := nodeDistance(o, n); ok {
				acc.distSum += d
				st.KnownDistance++
			}
		}
	}
}

func (st *ReplayStats) finish(acc *replayAcc) {
	if st.Orders > 0 {
		st.MeanShipments = float64(st.Shipments) / float64(st.Orders)
		st.SplitRate = float64(acc.split) / float64(st.Orders)
	}
	if st.KnownDistance > 0 {
		st.MeanDistanceKm = acc.distSum / float64(st.KnownDistance)
	}
}

type shipKey struct {
	node, sku string
	qty       int64
}

// SamePlan reports whether two results ship the same quantities from the
// same nodes with the same outcome and unfilled quantities. The order of
// shipments, of their lines and the explanations are ignored.
func SamePlan(a, b *Result) bool {
	if a.Outcome != b.Outcome {
		return false
	}
	flat := func(r *Result) []shipKey {
		var out []shipKey
		for _, s := range r.Shipments {
			for _, l := range s.Lines {
				out = append(out, shipKey{s.NodeID, l.SKU, l.Qty})
			}
		}
		for _, l := range r.Unfilled {
			out = append(out, shipKey{"\x00unfilled", l.SKU, l.Qty})
		}
		slices.SortFunc(out, func(x, y shipKey) int {
			if x.node != y.node {
				if x.node < y.node {
					return -1
				}
				return 1
			}
			if x.sku != y.sku {
				if x.sku < y.sku {
					return -1
				}
				return 1
			}
			return int(min(max(x.qty-y.qty, -1), 1))
		})
		return out
	}
	return slices.Equal(flat(a), flat(b))
}

// Limits of ReadReplayOrders.
const (
	// MaxReplayLines is the line cap used when ReadReplayOrders is given a
	// limit <= 0; a larger limit is lowered to it.
	MaxReplayLines = 1_000_000
	// MaxReplayLineBytes is the longest line accepted (1 MiB, as the API's
	// body limit).
	MaxReplayLineBytes = 1 << 20
)

// ReplayLineError is a problem on one line of replay input.
type ReplayLineError struct {
	Line    int    // 1-based
	Field   string // JSON path inside the order, when known
	Message string
}

func (e *ReplayLineError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("sourcing: replay input line %d: %s: %s", e.Line, e.Field, e.Message)
	}
	return fmt.Sprintf("sourcing: replay input line %d: %s", e.Line, e.Message)
}

var orderShape = shapeOf(reflect.TypeFor[Order]())

// ReadReplayOrders reads past orders as JSON lines: one Order per line (the
// Order JSON shape), blank lines skipped. Decoding is as strict as ParseRules.
// Each order needs at least one line, every line a SKU and a positive qty.
//
// limit caps the number of lines read (blank ones included): input with more
// lines is an error, never silently cut. limit <= 0 or above MaxReplayLines
// means MaxReplayLines. Errors are *ReplayLineError naming the line, or the
// reader's error. The orders come back with nil Nodes and Avail: set the
// snapshot to plan against before calling Replay.
func ReadReplayOrders(r io.Reader, limit int) ([]ReplayOrder, error) {
	if limit <= 0 || limit > MaxReplayLines {
		limit = MaxReplayLines
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxReplayLineBytes)
	var out []ReplayOrder
	line := 0
	for sc.Scan() {
		line++
		if line > limit {
			return nil, &ReplayLineError{Line: line, Message: "more than " + strconv.Itoa(limit) + " lines (the limit)"}
		}
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var ro ReplayOrder
		if fe := decodeOrder(b, &ro.Order); fe != nil {
			return nil, &ReplayLineError{Line: line, Field: fe.Field, Message: fe.Message}
		}
		out = append(out, ro)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &ReplayLineError{Line: line + 1, Message: "line longer than " + strconv.Itoa(MaxReplayLineBytes) + " bytes"}
		}
		return nil, fmt.Errorf("sourcing: reading replay input after line %d: %w", line, err)
	}
	return out, nil
}

func decodeOrder(b []byte, o *Order) *FieldError {
	if b[0] != '{' {
		return &FieldError{Message: "want a JSON object"}
	}
	if fe := strictCheck(b, orderShape); fe != nil {
		return fe
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(o); err != nil {
		fe := jsonFieldError(err)
		return &fe
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &FieldError{Message: "unexpected data after the order"}
	}
	if len(o.Lines) == 0 {
		return &FieldError{Field: "lines", Message: "at least one line is required"}
	}
	for i, l := range o.Lines {
		p := "lines[" + strconv.Itoa(i) + "]"
		if l.SKU == "" {
			return &FieldError{Field: p + ".sku", Message: "is required"}
		}
		if l.Qty <= 0 {
			return &FieldError{Field: p + ".qty", Message: "must be positive"}
		}
	}
	return nil
}
