package inventory_test

import (
	"errors"
	"testing"

	"github.com/omsd/omsd/inventory"
)

func TestNormalizeHold(t *testing.T) {
	l := func(sku string, q int64) inventory.Line { return inventory.Line{SKU: sku, Qty: q} }
	tests := []struct {
		scenario string
		in       []inventory.Line
		want     []inventory.Line
		err      error
	}{
		{"lines of one SKU merge in order of first appearance", []inventory.Line{l("b", 1), l("a", 2), l("b", 3)}, []inventory.Line{l("b", 4), l("a", 2)}, nil},
		{"distinct SKUs are kept", []inventory.Line{l("a", 1), l("b", 1)}, []inventory.Line{l("a", 1), l("b", 1)}, nil},
		{"no lines is invalid", nil, nil, inventory.ErrInvalid},
		{"a zero quantity is invalid", []inventory.Line{l("a", 0)}, nil, inventory.ErrInvalid},
		{"merged quantities past MaxQty are invalid", []inventory.Line{l("a", inventory.MaxQty), l("a", 1)}, nil, inventory.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			in := append([]inventory.Line(nil), tc.in...)
			got, err := inventory.NormalizeHold(inventory.Hold{ID: "h", Node: "n", Lines: in})
			if !errors.Is(err, tc.err) {
				t.Fatalf("got error %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if len(got.Lines) != len(tc.want) {
				t.Fatalf("got %v, want %v", got.Lines, tc.want)
			}
			for i := range tc.want {
				if got.Lines[i] != tc.want[i] {
					t.Errorf("line %d: got %v, want %v", i, got.Lines[i], tc.want[i])
				}
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Errorf("input line %d changed to %v", i, in[i])
				}
			}
		})
	}
}

func TestErrorsUnwrap(t *testing.T) {
	tests := []struct {
		scenario string
		err      error
		target   error
	}{
		{"a short line is insufficient stock", &inventory.ShortError{Node: "n", SKU: "a", Want: 2, Have: 1}, inventory.ErrInsufficient},
		{"a cold node is not ready", &inventory.NotReadyError{Nodes: []string{"n"}}, inventory.ErrNotReady},
		{"a closed hold is closed", &inventory.HoldClosedError{Node: "n", ID: "h", State: inventory.HoldCommitted}, inventory.ErrHoldClosed},
		{"a limit error is an exceeded limit", &inventory.LimitError{Promo: "p", SKU: "a", Limit: 1, Taken: 1, Want: 1}, inventory.ErrLimitExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			wrapped := errors.Join(errors.New("context"), tc.err)
			if !errors.Is(wrapped, tc.target) {
				t.Errorf("errors.Is(%v, %v) = false, want true", wrapped, tc.target)
			}
		})
	}
}
