package inventory

import (
	"context"
	"fmt"
	"time"
)

// Limits counts what each customer bought of a promoted SKU during a
// promotion, so that "at most N per customer" holds under concurrency.
//
// Intake takes the limit before it reserves stock, and gives it back if the
// reservation fails, so a customer who lost the race for stock keeps the
// right to buy.
type Limits interface {
	// Take adds qty to the customer's count of sku in promo for orderID,
	// atomically: it fails with a *LimitError (ErrLimitExceeded) when the
	// count would pass limit, and then counts nothing. It is idempotent per
	// orderID: a repeat of an order already counted returns nil and counts
	// nothing more. The count is forgotten after until (the end of the
	// promotion); after until the limit no longer applies and Take counts
	// nothing and returns nil. Errors also: ErrInvalid.
	Take(ctx context.Context, promo, customer, sku, orderID string, qty, limit int64, until time.Time) error
	// GiveBack removes orderID's quantity from the count. It is idempotent:
	// giving back an order that is not counted (never taken, or already
	// given back) returns nil.
	GiveBack(ctx context.Context, promo, customer, sku, orderID string) error
}

// ValidateTake checks the arguments of Limits.Take.
func ValidateTake(promo, customer, sku, orderID string, qty, limit int64) error {
	for _, f := range []struct{ what, v string }{{"promotion", promo}, {"customer", customer}, {"order id", orderID}} {
		if err := validateID(f.what, f.v); err != nil {
			return err
		}
	}
	if err := ValidateSKU(sku); err != nil {
		return err
	}
	if qty <= 0 || qty > MaxQty || limit < 0 || limit > MaxQty {
		return fmt.Errorf("%w: quantity %d or limit %d out of range", ErrInvalid, qty, limit)
	}
	return nil
}
