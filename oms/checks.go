package oms

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
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
		{"text", checkText},
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
	if r.Customer.OmsdID != "" {
		fs = append(fs, FieldError{"customer.omsd_id", "is set by omsd; leave it out"})
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
	if a.Source != "" {
		fs = append(fs, FieldError{"attribution.source", "is set by omsd; leave it out"})
	}
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

// MaxText bounds every free-text field that has no tighter limit.
const MaxText = 200

// checkText refuses, in every free-text field, what the database or a
// warehouse cannot take: NUL and other control characters (a JSON
// "\u0000" decodes to a valid string that PostgreSQL's jsonb refuses),
// invalid UTF-8, and values past their length limit.
func checkText(in *CheckInput) []FieldError {
	r := in.Req
	type field struct {
		name, v string
		max     int
	}
	fields := []field{{"customer.id", r.Customer.ID, 128}, {"customer.email", r.Customer.Email, 254},
		{"customer.phone", r.Customer.Phone, 32}, {"fulfillment.pickup_node", r.Fulfillment.PickupNode, 64}}
	if a := r.ShipTo; a != nil {
		fields = append(fields, field{"ship_to.name", a.Name, MaxText}, field{"ship_to.line1", a.Line1, MaxText},
			field{"ship_to.line2", a.Line2, MaxText}, field{"ship_to.city", a.City, MaxText},
			field{"ship_to.region", a.Region, 16}, field{"ship_to.postal_code", a.PostalCode, 32},
			field{"ship_to.country", a.Country, 2})
	}
	if a := r.Attribution; a != nil {
		fields = append(fields, field{"attribution.distributor", a.Distributor, 128}, field{"attribution.store", a.Store, 64},
			field{"attribution.associate", a.Associate, 128})
	}
	var fs []FieldError
	for _, f := range fields {
		if msg := textProblem(f.v, f.max); msg != "" {
			fs = append(fs, FieldError{f.name, msg})
		}
	}
	return fs
}

// textProblem says what is wrong with a free-text value, "" when nothing.
func textProblem(v string, max int) string {
	if len(v) > max {
		return fmt.Sprintf("at most %d bytes", max)
	}
	if !utf8.ValidString(v) {
		return "must be valid UTF-8"
	}
	for _, c := range v {
		if unicode.IsControl(c) {
			return "must not contain control characters (such as NUL)"
		}
	}
	return ""
}

// MaxIdempotencyKey bounds the Idempotency-Key header.
const MaxIdempotencyKey = 255

// CheckIdempotencyKey refuses an Idempotency-Key header that is too long,
// not UTF-8 or holds control characters: a 400 naming the header.
func CheckIdempotencyKey(key string) error {
	if msg := textProblem(key, MaxIdempotencyKey); msg != "" {
		return &Error{Kind: KindBadRequest, Slug: SlugBadHeader, Detail: "the Idempotency-Key header is not valid",
			Fields: []FieldError{{"Idempotency-Key", msg}}}
	}
	return nil
}
