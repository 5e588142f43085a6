package oms

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Review reasons recorded on an order put in review.
const (
	ReviewRepeatOrder        = "repeat_order"
	ReviewUnusualQtyNewBuyer = "unusual_quantity_new_customer"
)

// ReviewCheck flags a valid but suspicious order: a non-empty reason puts
// it in review (its stock held, nothing sent to a warehouse until a person
// clears it). An error fails the order with 503 (the channel retries).
// Deployments append their own to Intake.ReviewChecks.
type ReviewCheck struct {
	Name string
	Fn   func(ctx context.Context, in *CheckInput) (reason string, err error)
}

// Seen is a key to remember for TTL with a value.
type Seen struct {
	Key, Value string
	TTL        time.Duration
}

// Bit is one bit of a fixed-size bitmap (memory that stays bounded however
// many distinct ids it sees). Set sets it; either way the answer is
// whether it was set before.
type Bit struct {
	Key    string
	Offset int64
	Set    bool
	TTL    time.Duration // of the bitmap key, renewed when Set
}

// Recent is intake's short memory, answered in one round trip: Remember
// sets each absent key to its value (returning the previous values, ""
// when absent) and reads or sets each bit (returning whether it was set).
// Forget deletes a key that still holds value.
type Recent interface {
	Remember(ctx context.Context, keys []Seen, bits []Bit) (prev []string, wasSet []bool, err error)
	Forget(ctx context.Context, key, value string) error
}

// ReviewConfig tunes the built-in review checks. Zero values mean the
// defaults written next to each field.
type ReviewConfig struct {
	// UnusualQty: a line of at least this many units from a customer not
	// seen before puts the order in review; default 20.
	UnusualQty int64
	// RepeatWindow: the same customer ordering the same lines again within
	// it (under another external id) puts the order in review; default 10
	// minutes.
	RepeatWindow time.Duration
	// CustomerMemory: how long a customer counts as known; default 90
	// days. Customers are remembered as bits of two fixed-size bitmaps (the
	// current and the previous half of the memory), so the memory is
	// bounded whatever ids channels send; a collision only makes a new
	// customer look known (the check errs on the permissive side).
	CustomerMemory time.Duration
	// CustomerBits is the size of one bitmap in bits; default 2^26 (8 MiB,
	// about 1.5 % collisions at a million customers).
	CustomerBits int64
	// CopyWindow: how long an attempt of an order id is remembered, so
	// that a copy racing on another instance is told to retry instead of
	// "no stock"; default 2 minutes.
	CopyWindow time.Duration
}

func (c *ReviewConfig) setDefaults() {
	c.UnusualQty = cmpOr64(c.UnusualQty, 20)
	c.RepeatWindow = cmpOr(c.RepeatWindow, 10*time.Minute)
	c.CustomerMemory = cmpOr(c.CustomerMemory, 90*24*time.Hour)
	c.CustomerBits = cmpOr64(c.CustomerBits, 1<<26)
	c.CopyWindow = cmpOr(c.CopyWindow, 2*time.Minute)
}

// observation is what one round trip to the memory told about an order.
type observation struct {
	reasons []string
	// copySeen: another attempt of the same order id started within the
	// copy window (here or on another instance).
	copySeen   bool
	attemptKey string
}

// observe records the order in intake's memory and runs the built-in
// review checks on the answer (repeat order, new customer with an unusual
// quantity), then the deployment's own checks. One round trip.
func (in *Intake) observe(ctx context.Context, ci *CheckInput, id, attempt string, cm *CustomerMatch) (observation, error) {
	var ob observation
	if in.recent != nil {
		cfg := in.cfg.Review
		// The omsd customer when customers are matched (the same buyer
		// through two channels is one), the channel's id otherwise.
		cust := fingerprint(ci.Channel, ci.Req.Customer.ID)
		if cm != nil {
			cust = fingerprint("customer", cm.ID)
		}
		lines := slices.Clone(ci.Req.Lines)
		slices.SortFunc(lines, func(a, b Line) int { return strings.Compare(a.SKU, b.SKU) })
		var b strings.Builder
		b.WriteString(cust)
		for _, l := range lines {
			fmt.Fprintf(&b, "|%s:%d", l.SKU, l.Qty)
		}
		ob.attemptKey = "oms:attempt:" + id
		period := ci.Now.UnixNano() / int64(cfg.CustomerMemory/2)
		bit := customerBit(cust, cfg.CustomerBits)
		prev, wasSet, err := in.recent.Remember(ctx,
			[]Seen{{"oms:repeat:" + fingerprint(b.String()), id, cfg.RepeatWindow}, {ob.attemptKey, attempt, cfg.CopyWindow}},
			[]Bit{{fmt.Sprintf("oms:customers:%d", period), bit, true, cfg.CustomerMemory},
				{fmt.Sprintf("oms:customers:%d", period-1), bit, false, 0}})
		if err != nil {
			return ob, unavailable("order checks are unavailable", err)
		}
		ob.copySeen = prev[1] != ""
		if prev[0] != "" && prev[0] != id {
			ob.reasons = append(ob.reasons, ReviewRepeatOrder)
		} else if newCustomer := (!wasSet[0] && !wasSet[1]) || (cm != nil && cm.New); newCustomer || ob.copySeen {
			// A copy set the customer's bit itself: it is judged as the
			// first attempt was, as a new customer (a stored first attempt
			// answers for itself anyway).
			for _, l := range ci.Req.Lines {
				if l.Qty >= cfg.UnusualQty {
					ob.reasons = append(ob.reasons, ReviewUnusualQtyNewBuyer)
					break
				}
			}
		}
	}
	for _, rc := range in.ReviewChecks {
		reason, err := rc.Fn(ctx, ci)
		if err != nil {
			return ob, unavailable("order checks are unavailable", err)
		}
		if reason != "" {
			ob.reasons = append(ob.reasons, reason)
		}
	}
	return ob, nil
}

// forgetAttempt removes this attempt's marker once it is known that it
// stored nothing, so that the channel's retry is not taken for a copy.
func (in *Intake) forgetAttempt(ctx context.Context, ob observation, attempt string) {
	if in.recent == nil || ob.attemptKey == "" {
		return
	}
	if err := in.recent.Forget(ctx, ob.attemptKey, attempt); err != nil {
		in.log.Warn("forget order attempt", "err", err)
	}
}

// fingerprint hashes identifiers so that keys carry no personal data.
func fingerprint(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:12])
}

func customerBit(fp string, bits int64) int64 {
	h := sha256.Sum256([]byte(fp))
	return int64(binary.BigEndian.Uint64(h[:8]) % uint64(bits))
}

func cmpOr64(v, def int64) int64 {
	if v <= 0 {
		return def
	}
	return v
}
