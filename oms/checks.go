package oms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// CheckInput is what an order check sees.
type CheckInput struct {
	Channel string
	Req     *OrderRequest
	// Node looks up a fulfillment node by id.
	Node func(id string) (Node, bool)
	Now  time.Time
}

// Check validates one aspect of an order and returns the fields at fault.
// Checks run before anything is reserved; every failure of every check is
// reported together as one 422.
type Check struct {
	Name string
	Fn   func(in *CheckInput) []FieldError
}

// ReviewCheck flags a valid but suspicious order: a non-empty reason puts it
// on hold (reserved, not released to the warehouse until an admin releases
// it). An error fails the order with 503 (the channel retries).
type ReviewCheck struct {
	Name string
	Fn   func(ctx context.Context, in *CheckInput) (reason string, err error)
}

var (
	skuPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$`)
	externalPattern = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
)

// knownCurrencies are the ISO 4217 codes omsd accepts.
var knownCurrencies = map[string]bool{
	"CNY": true, "HKD": true, "MOP": true, "TWD": true, "JPY": true, "KRW": true, "SGD": true,
	"USD": true, "EUR": true, "GBP": true, "AUD": true, "CAD": true, "CHF": true, "NZD": true,
	"MYR": true, "THB": true, "IDR": true, "PHP": true, "VND": true, "INR": true, "AED": true,
}

// DefaultChecks are the validation checks of every order. A deployment
// appends its own to the Intake's Checks.
func DefaultChecks() []Check {
	return []Check{
		{"required", checkRequired},
		{"lines", checkLines},
		{"currency", checkCurrency},
		{"total", checkTotal},
		{"fulfillment", checkFulfillment},
		{"attribution", checkAttribution},
	}
}

func checkRequired(in *CheckInput) []FieldError {
	var fs []FieldError
	r := in.Req
	if !externalPattern.MatchString(r.ExternalID) {
		fs = append(fs, FieldError{"external_id", "is required: 1-128 printable ASCII characters without spaces"})
	}
	if strings.TrimSpace(r.Customer.ID) == "" || len(r.Customer.ID) > 128 {
		fs = append(fs, FieldError{"customer.id", "is required (at most 128 characters)"})
	}
	if len(r.Customer.Email) > 254 || (r.Customer.Email != "" && !strings.Contains(r.Customer.Email, "@")) {
		fs = append(fs, FieldError{"customer.email", "must be an email address"})
	}
	if len(r.Customer.Phone) > 32 {
		fs = append(fs, FieldError{"customer.phone", "at most 32 characters"})
	}
	switch r.Payment.Status {
	case PaymentPaid, PaymentPending:
	default:
		fs = append(fs, FieldError{"payment.status", "must be paid or pending"})
	}
	return fs
}

func checkLines(in *CheckInput) []FieldError {
	var fs []FieldError
	r := in.Req
	if len(r.Lines) == 0 {
		return []FieldError{{"lines", "at least one line is required"}}
	}
	if len(r.Lines) > MaxLines {
		return []FieldError{{"lines", fmt.Sprintf("at most %d lines", MaxLines)}}
	}
	for i, l := range r.Lines {
		p := fmt.Sprintf("lines[%d]", i)
		if !skuPattern.MatchString(l.SKU) {
			fs = append(fs, FieldError{p + ".sku", "must be 1-64 letters, digits, '.', '_', '/' or '-'"})
		}
		if l.Qty < 1 || l.Qty > MaxQty {
			fs = append(fs, FieldError{p + ".qty", fmt.Sprintf("must be between 1 and %d", MaxQty)})
		}
		if l.UnitPrice < 0 || l.UnitPrice > MaxUnitCost {
			fs = append(fs, FieldError{p + ".unit_price", "must be a non-negative amount in minor units"})
		}
	}
	return fs
}

func checkCurrency(in *CheckInput) []FieldError {
	if !knownCurrencies[in.Req.Currency] {
		return []FieldError{{"currency", "must be a known ISO 4217 code such as CNY"}}
	}
	return nil
}

func checkTotal(in *CheckInput) []FieldError {
	r := in.Req
	if r.Total == nil {
		return nil
	}
	var sum int64
	for _, l := range r.Lines {
		if l.Qty < 0 || l.UnitPrice < 0 || l.Qty > MaxQty || l.UnitPrice > MaxUnitCost {
			return nil // the lines check reports it
		}
		sum += l.Qty * l.UnitPrice
	}
	if *r.Total != sum {
		return []FieldError{{"total", fmt.Sprintf("is %d but the lines add up to %d", *r.Total, sum)}}
	}
	return nil
}

func checkFulfillment(in *CheckInput) []FieldError {
	r := in.Req
	var fs []FieldError
	switch r.Fulfillment.Type {
	case FulfillShip:
		a := r.ShipTo
		if a == nil {
			return []FieldError{{"ship_to", "is required for ship orders"}}
		}
		for _, f := range []struct{ name, v string }{
			{"ship_to.name", a.Name}, {"ship_to.line1", a.Line1}, {"ship_to.city", a.City}, {"ship_to.postal_code", a.PostalCode},
		} {
			if strings.TrimSpace(f.v) == "" || len(f.v) > 200 {
				fs = append(fs, FieldError{f.name, "is required (at most 200 characters)"})
			}
		}
		if !ValidRegion(a.Region) || !strings.Contains(a.Region, "-") {
			fs = append(fs, FieldError{"ship_to.region", "must be an ISO 3166-2 code such as CN-ZJ"})
		}
		if len(a.Country) != 2 || strings.ToUpper(a.Country) != a.Country || (ValidRegion(a.Region) && !strings.HasPrefix(a.Region, a.Country+"-")) {
			fs = append(fs, FieldError{"ship_to.country", "must be the ISO 3166-1 code of the region's country"})
		}
		if (a.Lat == nil) != (a.Lon == nil) {
			fs = append(fs, FieldError{"ship_to.lat", "lat and lon go together"})
		}
		if a.Lat != nil && (*a.Lat < -90 || *a.Lat > 90) {
			fs = append(fs, FieldError{"ship_to.lat", "must be between -90 and 90"})
		}
		if a.Lon != nil && (*a.Lon < -180 || *a.Lon > 180) {
			fs = append(fs, FieldError{"ship_to.lon", "must be between -180 and 180"})
		}
		if r.Fulfillment.PickupNode != "" {
			fs = append(fs, FieldError{"fulfillment.pickup_node", "only pickup orders name a pickup node"})
		}
	case FulfillPickup:
		n, ok := in.Node(r.Fulfillment.PickupNode)
		switch {
		case r.Fulfillment.PickupNode == "":
			fs = append(fs, FieldError{"fulfillment.pickup_node", "is required for pickup orders"})
		case !ok:
			fs = append(fs, FieldError{"fulfillment.pickup_node", "is not a known node"})
		case n.Type != NodeStore:
			fs = append(fs, FieldError{"fulfillment.pickup_node", "is not a store"})
		case !n.Active:
			fs = append(fs, FieldError{"fulfillment.pickup_node", "is not active"})
		}
	default:
		fs = append(fs, FieldError{"fulfillment.type", "must be ship or pickup"})
	}
	return fs
}

func checkAttribution(in *CheckInput) []FieldError {
	a := in.Req.Attribution
	if a == nil {
		return nil
	}
	var fs []FieldError
	for _, f := range []struct{ name, v string }{
		{"attribution.distributor", a.Distributor}, {"attribution.associate", a.Associate},
	} {
		if len(f.v) > 128 {
			fs = append(fs, FieldError{f.name, "at most 128 characters"})
		}
	}
	if a.Store != "" {
		if n, ok := in.Node(a.Store); !ok || n.Type != NodeStore {
			fs = append(fs, FieldError{"attribution.store", "must be a known node of type store"})
		}
	}
	return fs
}

// RunChecks runs every check and returns one validation error listing
// every field at fault, or nil.
func RunChecks(checks []Check, in *CheckInput) error {
	var fs []FieldError
	for _, c := range checks {
		fs = append(fs, c.Fn(in)...)
	}
	if len(fs) > 0 {
		return Invalid("the order is not valid", fs...)
	}
	return nil
}

// Seen is one key to remember for TTL with a value.
type Seen struct {
	Key, Value string
	TTL        time.Duration
}

// Recent remembers keys for a while: MarkSeen sets each key to its value
// if absent and returns the previous values ("" when absent). Redis SET NX
// GET implements it in one round trip.
type Recent interface {
	MarkSeen(ctx context.Context, entries []Seen) (previous []string, err error)
}

// ReviewConfig tunes the default hold checks.
type ReviewConfig struct {
	// UnusualQty: a line of at least this many units from a customer not
	// seen before goes on hold; default 20.
	UnusualQty int64
	// RepeatWindow: the same customer ordering the same lines again within
	// it goes on hold; default 10 minutes.
	RepeatWindow time.Duration
	// CustomerMemory: how long a customer counts as known; default 90 days.
	CustomerMemory time.Duration
}

// DefaultReviewChecks flags a new customer ordering an unusual quantity, and
// the same customer ordering the same lines twice within minutes (under a
// different external id: a true retry is caught by idempotency first).
// Both are answered by one Redis round trip.
func DefaultReviewChecks(cfg ReviewConfig, recent Recent, orderID func(*CheckInput) string) []ReviewCheck {
	if cfg.UnusualQty <= 0 {
		cfg.UnusualQty = 20
	}
	if cfg.RepeatWindow <= 0 {
		cfg.RepeatWindow = 10 * time.Minute
	}
	if cfg.CustomerMemory <= 0 {
		cfg.CustomerMemory = 90 * 24 * time.Hour
	}
	return []ReviewCheck{{Name: "suspicious", Fn: func(ctx context.Context, in *CheckInput) (string, error) {
		id := orderID(in)
		cust := fingerprint(in.Channel, in.Req.Customer.ID)
		lines := slices.Clone(in.Req.Lines)
		slices.SortFunc(lines, func(a, b Line) int { return strings.Compare(a.SKU, b.SKU) })
		var b strings.Builder
		b.WriteString(cust)
		for _, l := range lines {
			fmt.Fprintf(&b, "|%s:%d", l.SKU, l.Qty)
		}
		repeatKey := "oms:repeat:" + fingerprint(b.String())
		custKey := "oms:customer:" + cust
		prev, err := recent.MarkSeen(ctx, []Seen{{repeatKey, id, cfg.RepeatWindow}, {custKey, id, cfg.CustomerMemory}})
		if err != nil {
			return "", err
		}
		if prev[0] != "" && prev[0] != id {
			return "repeat_order", nil
		}
		if prev[1] == "" || prev[1] == id {
			for _, l := range in.Req.Lines {
				if l.Qty >= cfg.UnusualQty {
					return "unusual_quantity_new_customer", nil
				}
			}
		}
		return "", nil
	}}}
}

// fingerprint hashes identifiers so that Redis keys carry no personal data.
func fingerprint(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:12])
}
