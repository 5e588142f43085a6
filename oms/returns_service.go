package oms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/sourcing"
)

// ReturnQuery says which order a ReturnStore.ReturnTx locks and what it
// records with the move.
type ReturnQuery struct {
	// OrderID, or ReturnID whose order is locked.
	OrderID, ReturnID string
	// EventID, when set, is recorded in processed_events in the same
	// transaction; a duplicate calls nothing (applied false).
	EventID string
	// Channel and IdempotencyKey: a created return records the key.
	Channel, IdempotencyKey string
}

// ReturnStore is what after-sales needs of the SQL store.
type ReturnStore interface {
	// ReturnTx locks the order, reads its returns, runs fn and writes the
	// change it returns (nothing when its Order is nil) in one
	// transaction, with the receipt's stock movements. applied is false
	// for a duplicate event or a change with nothing to write.
	ReturnTx(ctx context.Context, q ReturnQuery, fn func(o *Order, rets []*Return) (ReturnChange, error)) (ReturnChange, bool, error)
	GetReturn(ctx context.Context, id string) (*Return, error)
	OrderReturns(ctx context.Context, orderID string) ([]*Return, error)
	ReturnIdempotencyKey(ctx context.Context, channel, key string) (returnID string, hash []byte, err error)
	GetOrder(ctx context.Context, id string) (*Order, []byte, error)
}

// Restocker puts returned sellable units back into the live counters, once
// per restock id (inventory.Restocker).
type Restocker interface {
	Restock(ctx context.Context, node, id, sku string, qty int64) (bool, error)
}

// OrderSubmitter is intake, for the exchange orders of approved exchanges.
type OrderSubmitter interface {
	Submit(ctx context.Context, channel, idemKey string, req *OrderRequest) (Result, error)
}

// OrderCanceller cancels an exchange order whose return was rejected while
// the exchange was being placed.
type OrderCanceller interface {
	Cancel(ctx context.Context, channel, id, reason string) (*Order, error)
}

// ReturnsConfig wires the after-sales service.
type ReturnsConfig struct {
	Store    ReturnStore
	Stock    Restocker // nil: the reconciler brings the units back
	Intake   OrderSubmitter
	Cancel   OrderCanceller
	Catalog  PlanCatalog
	Limits   inventory.Limits // nil: no purchase limits
	Promos   Catalog          // the promotions of the purchase limits
	Logger   *slog.Logger
	Timeout  time.Duration // side effects after a commit; default 10s
	Registry prometheus.Registerer
}

// ReturnService runs returns, refunds and exchanges.
type ReturnService struct {
	cfg ReturnsConfig
	log *slog.Logger
	Now func() time.Time

	ops      *prometheus.CounterVec
	byReason *prometheus.CounterVec
	refunded *prometheus.CounterVec
	units    *prometheus.CounterVec
	stockErr prometheus.Counter
}

// NewReturnService builds the service and registers its metrics.
func NewReturnService(cfg ReturnsConfig) (*ReturnService, error) {
	if cfg.Store == nil || cfg.Intake == nil || cfg.Catalog == nil {
		return nil, errors.New("oms: the return service needs a store, intake and a catalog")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	s := &ReturnService{cfg: cfg, log: cfg.Logger, Now: time.Now}
	s.ops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_returns_operations_total",
		Help: "After-sales operations (request, approve, reject, acknowledge, receive, refund) by result: applied, repeat, duplicate, conflict, error; state is the return's status after it.",
	}, []string{"op", "result", "state"})
	s.byReason = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_returns_requested_total", Help: "Returns requested, by reason and resolution.",
	}, []string{"reason", "resolution"})
	s.refunded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_returns_refunded_amount_total", Help: "Refunded amounts in minor units, by currency.",
	}, []string{"currency"})
	s.units = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omsd_returns_received_units_total", Help: "Units received back, by condition (sellable units go back into on hand).",
	}, []string{"condition"})
	s.stockErr = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omsd_returns_restock_errors_total",
		Help: "Restocks of received sellable units that failed after the SQL commit; the reconciler applies them.",
	})
	if reg := cfg.Registry; reg != nil {
		for _, c := range []prometheus.Collector{s.ops, s.byReason, s.refunded, s.units, s.stockErr} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("oms: register return metrics: %w", err)
			}
		}
	}
	return s, nil
}

func (s *ReturnService) count(op string, r *Return, err error) {
	switch {
	case err == nil && r != nil:
		s.ops.WithLabelValues(op, "applied", string(r.Status)).Inc()
	case errors.Is(err, errUnchanged):
		s.ops.WithLabelValues(op, "repeat", "").Inc()
	default:
		s.ops.WithLabelValues(op, resultOf(err), "").Inc()
	}
}

// Request opens a return of order orderID for channel ("" = an operator).
// created false: a repeat of the same request (200). Errors: KindInvalid
// (fields, or more than shipped less returned, naming the line),
// KindNotFound, KindConflict idempotency-conflict, KindBadRequest (the
// Idempotency-Key header).
func (s *ReturnService) Request(ctx context.Context, channel, orderID, idemKey string, req *ReturnRequest) (*Return, bool, error) {
	if err := validOrderID(orderID); err != nil {
		return nil, false, err
	}
	if err := ValidateReturnRequest(req); err != nil {
		s.count("request", nil, err)
		return nil, false, err
	}
	if err := CheckIdempotencyKey(idemKey); err != nil {
		return nil, false, err
	}
	hash := ReturnRequestHash(req)
	id := ReturnID(orderID, req.ExternalID)
	if idemKey != "" {
		rid, h, err := s.cfg.Store.ReturnIdempotencyKey(ctx, channel, idemKey)
		switch {
		case err == nil && (rid != id || string(h) != string(hash)):
			return nil, false, Errorf(KindConflict, SlugIdempotencyConflict, "the Idempotency-Key was used for another return request")
		case err != nil && KindOf(err) != KindNotFound:
			return nil, false, unavailable("idempotency lookup failed", err)
		}
	}
	ch, applied, err := s.cfg.Store.ReturnTx(ctx, ReturnQuery{OrderID: orderID, Channel: channel, IdempotencyKey: idemKey},
		func(o *Order, rets []*Return) (ReturnChange, error) {
			node, _ := s.receivingNode(o, req.Lines)
			return NewReturn(o, rets, channel, req, hash, node, s.Now().UTC())
		})
	if err != nil {
		s.count("request", nil, err)
		return nil, false, storeErr(err)
	}
	if !applied {
		s.count("request", nil, errUnchanged)
		return ch.Return, false, nil
	}
	s.count("request", ch.Return, nil)
	s.byReason.WithLabelValues(req.Reason, req.Resolution).Inc()
	s.log.Info("return requested", "return_id", ch.Return.ID, "order_id", orderID, "node", ch.Return.NodeID, "reason", req.Reason)
	return ch.Return, true, nil
}

// receivingNode applies the rules' returns section to the order.
func (s *ReturnService) receivingNode(o *Order, lines []ShipLine) (string, string) {
	want := map[string]bool{}
	for _, l := range lines {
		want[l.SKU] = true
	}
	units := map[string]int64{}
	for _, sh := range o.Shipments {
		if sh.Status != ShipmentShipped {
			continue
		}
		for _, l := range sh.Lines {
			if want[l.SKU] {
				units[sh.NodeID] += l.Qty
			}
		}
	}
	var from []sourcing.ShippedFrom
	for n, u := range units {
		from = append(from, sourcing.ShippedFrom{Node: n, Units: u})
	}
	var lat, lon float64
	ok := o.ShipTo != nil && o.ShipTo.Lat != nil && o.ShipTo.Lon != nil
	if ok {
		lat, lon = *o.ShipTo.Lat, *o.ShipTo.Lon
	}
	var rules *sourcing.ReturnRules
	if rs := s.cfg.Catalog.Rules(); rs != nil {
		rules = rs.Returns
	}
	return sourcing.ReturnNode(rules, from, lat, lon, ok, s.cfg.Catalog.Candidates())
}

// Get returns a return of channel ("" = any).
func (s *ReturnService) Get(ctx context.Context, channel, id string) (*Return, error) {
	if err := validOrderID(id); err != nil {
		return nil, Errorf(KindNotFound, SlugNotFound, "no such return")
	}
	r, err := s.cfg.Store.GetReturn(ctx, id)
	if err != nil {
		return nil, storeErr(err)
	}
	if channel != "" && r.Channel != channel {
		return nil, Errorf(KindNotFound, SlugNotFound, "no such return")
	}
	return r, nil
}

// ForOrder lists the returns of an order of channel ("" = any).
func (s *ReturnService) ForOrder(ctx context.Context, channel, orderID string) ([]*Return, error) {
	if err := validOrderID(orderID); err != nil {
		return nil, err
	}
	o, _, err := s.cfg.Store.GetOrder(ctx, orderID)
	if err != nil {
		return nil, storeErr(err)
	}
	if channel != "" && o.Channel != channel {
		return nil, notYours()
	}
	rets, err := s.cfg.Store.OrderReturns(ctx, orderID)
	if err != nil {
		return nil, storeErr(err)
	}
	if rets == nil {
		rets = []*Return{}
	}
	return rets, nil
}

// move runs one move on the return's locked order and answers with the
// return after it (the stored one when nothing changed).
func (s *ReturnService) move(ctx context.Context, op, channel, id, eventID string, fn func(o *Order, rets []*Return, r *Return) (ReturnChange, error)) (ReturnChange, error) {
	if err := validOrderID(id); err != nil {
		return ReturnChange{}, Errorf(KindNotFound, SlugNotFound, "no such return")
	}
	ch, applied, err := s.cfg.Store.ReturnTx(ctx, ReturnQuery{ReturnID: id, EventID: eventID}, func(o *Order, rets []*Return) (ReturnChange, error) {
		for _, r := range rets {
			if r.ID == id {
				if channel != "" && r.Channel != channel {
					return ReturnChange{}, Errorf(KindNotFound, SlugNotFound, "no such return")
				}
				return fn(o, rets, r)
			}
		}
		return ReturnChange{}, Errorf(KindNotFound, SlugNotFound, "no such return")
	})
	switch {
	case errors.Is(err, errUnchanged) || (err == nil && !applied):
		s.count(op, nil, errUnchanged)
		r, gerr := s.Get(ctx, channel, id)
		if gerr != nil {
			return ReturnChange{}, gerr
		}
		return ReturnChange{Return: r}, nil
	case err != nil:
		s.count(op, nil, err)
		return ReturnChange{}, storeErr(err)
	}
	s.count(op, ch.Return, nil)
	return ch, nil
}

// Approve approves a requested return. An exchange first places its
// exchange order through intake (external id = the return's + "-X", price
// 0, the original's customer, address and attribution), so it is sourced,
// reserved and committed like any order; refused for stock, the return
// falls back to a refund and says so.
func (s *ReturnService) Approve(ctx context.Context, channel, id string) (*Return, error) {
	cur, err := s.Get(ctx, channel, id)
	if err != nil {
		return nil, err
	}
	exchangeID, refused := "", ""
	if cur.Resolution == ResolutionExchange && cur.Status == ReturnRequested {
		exchangeID, refused, err = s.placeExchange(ctx, cur)
		if err != nil {
			s.count("approve", nil, err)
			return nil, err
		}
	}
	ch, err := s.move(ctx, "approve", channel, id, "", func(o *Order, _ []*Return, r *Return) (ReturnChange, error) {
		return ApproveReturn(o, r, channel, exchangeID, refused, s.Now().UTC())
	})
	if err != nil {
		return nil, err
	}
	if exchangeID != "" && ch.Return.ExchangeOrderID != exchangeID {
		// Rejected meanwhile (or approved by a concurrent call that placed
		// no exchange): the exchange order must not ship.
		if _, cerr := s.cfg.Cancel.Cancel(context.WithoutCancel(ctx), "", exchangeID, "return "+id+" was not approved with this exchange"); cerr != nil {
			s.log.Error("cancel orphan exchange order", "return_id", id, "order_id", exchangeID, "err", cerr)
		}
	}
	return ch.Return, nil
}

func (s *ReturnService) placeExchange(ctx context.Context, r *Return) (string, string, error) {
	o, _, err := s.cfg.Store.GetOrder(ctx, r.OrderID)
	if err != nil {
		return "", "", storeErr(err)
	}
	// The replacement is the same buyer's and the same sale's: the
	// original's customer and attribution, as a request carries them.
	cust := o.Customer
	cust.OmsdID = ""
	var attr *Attribution
	if a := o.Attribution; a != nil && a.Source != AttributionNone {
		attr = &Attribution{Associate: a.Associate, Store: a.Store, Distributor: a.Distributor}
	}
	req := &OrderRequest{ExternalID: r.ExternalID + "-X", Customer: cust, ShipTo: o.ShipTo, Currency: o.Currency,
		Payment: Payment{Status: PaymentPaid}, Fulfillment: o.Fulfillment, Attribution: attr}
	for _, l := range r.ExchangeLines {
		req.Lines = append(req.Lines, Line{SKU: l.SKU, Qty: l.Qty})
	}
	res, err := s.cfg.Intake.Submit(ctx, o.Channel, "", req)
	switch {
	case err == nil:
		return res.Order.ID, "", nil
	case KindOf(err) == KindConflict:
		var e *Error
		if errors.As(err, &e) && e.Slug == SlugInsufficientStock {
			return "", ExchangeRefusedNoStock, nil
		}
		if errors.As(err, &e) && e.Slug == SlugLimitExceeded {
			return "", "limit_exceeded", nil
		}
		return "", "", err
	case KindOf(err) == KindInvalid:
		return "", "", Errorf(KindConflict, SlugInvalidTransition, "the exchange order is not valid: %v", err)
	}
	return "", "", err
}

// Reject rejects a requested return.
func (s *ReturnService) Reject(ctx context.Context, channel, id, reason string) (*Return, error) {
	ch, err := s.move(ctx, "reject", channel, id, "", func(o *Order, _ []*Return, r *Return) (ReturnChange, error) {
		return RejectReturn(o, r, channel, reason, s.Now().UTC())
	})
	return ch.Return, err
}

// Refund records the payment system's refund of a received return. A
// refunded unit gives its purchase-limit slot back.
func (s *ReturnService) Refund(ctx context.Context, channel, id, reference string) (*Return, error) {
	ch, err := s.move(ctx, "refund", channel, id, "", func(o *Order, _ []*Return, r *Return) (ReturnChange, error) {
		return RefundReturn(o, r, channel, reference, s.Now().UTC())
	})
	if err != nil {
		return nil, err
	}
	if ch.Order != nil {
		s.refunded.WithLabelValues(ch.Return.Refund.Currency).Add(float64(ch.Return.Refund.Amount))
		s.giveBackLimits(ctx, ch.Order, ch.Return)
	}
	return ch.Return, nil
}

// giveBackLimits lowers the order's purchase-limit count of each promoted
// SKU by the refunded units: the count is per order, so it is given back
// and taken again for what the buyer keeps. Errors are logged (a slot
// given back by mistake errs on the buyer's side).
func (s *ReturnService) giveBackLimits(ctx context.Context, o *Order, r *Return) {
	if s.cfg.Limits == nil || s.cfg.Promos == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	back := map[string]int64{}
	for _, l := range r.ReceivedLines {
		back[l.SKU] += l.Qty
	}
	for _, line := range o.Lines {
		p, ok := s.cfg.Promos.Promotion(line.SKU, o.CreatedAt)
		if !ok || back[line.SKU] == 0 {
			continue
		}
		keep := line.Qty - back[line.SKU]
		delete(back, line.SKU)
		if err := s.cfg.Limits.GiveBack(ctx, p.ID, o.Customer.ID, p.SKU, o.ID); err != nil {
			s.log.Error("give back purchase limit", "order_id", o.ID, "promotion", p.ID, "err", err)
			continue
		}
		if keep > 0 {
			if err := s.cfg.Limits.Take(ctx, p.ID, o.Customer.ID, p.SKU, o.ID, keep, inventory.MaxQty, p.EndsAt); err != nil {
				s.log.Error("retake purchase limit", "order_id", o.ID, "promotion", p.ID, "err", err)
			}
		}
	}
}

// ApplyWMSEvent applies a warehouse's return event (return.acknowledged,
// return.received) exactly once, by event id in the transaction of the
// change. Errors: KindInvalid (the receipt's lines), KindNotFound (unknown
// return), KindConflict (not approved), transient ones.
func (s *ReturnService) ApplyWMSEvent(ctx context.Context, ev WMSEvent) (*Return, error) {
	if err := ValidateWMSEvent(ev); err != nil {
		return nil, err
	}
	if !ev.IsReturnEvent() {
		return nil, Invalid("not a return event", FieldError{Field: "type", Message: "must be return.acknowledged or return.received"})
	}
	op := "receive"
	if ev.Type == WMSReturnAcknowledged {
		op = "acknowledge"
	}
	ch, err := s.move(ctx, op, "", ev.ReturnID, ev.EventID, func(o *Order, rets []*Return, r *Return) (ReturnChange, error) {
		if ev.Type == WMSReturnAcknowledged {
			return AcknowledgeReturn(o, r, s.Now().UTC())
		}
		return ReceiveReturn(o, rets, r, ev.Lines, s.Now().UTC())
	})
	if err != nil {
		return nil, err
	}
	if len(ch.Restocks) > 0 {
		s.restock(ctx, ch.Restocks)
	}
	return ch.Return, nil
}

// restock puts the sellable units into the live counters after the
// commit; a failure is left to the reconciler (the ledger has the row).
func (s *ReturnService) restock(ctx context.Context, rs []Restock) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	for _, r := range rs {
		cond := ConditionSellable
		if r.Damaged {
			cond = ConditionDamaged
		}
		s.units.WithLabelValues(cond).Add(float64(r.Qty))
		if r.Damaged || s.cfg.Stock == nil {
			continue
		}
		if _, err := s.cfg.Stock.Restock(ctx, r.Node, r.ID, r.SKU, r.Qty); err != nil {
			s.stockErr.Inc()
			s.log.Warn("restock after receipt failed; the reconciler applies it", "node", r.Node, "sku", r.SKU, "restock", r.ID, "err", err)
		}
	}
}

// storeErr keeps domain errors and turns the rest into a 503.
func storeErr(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return unavailable("the store failed", err)
}

// ShipmentEvents applies the shipment events of wms.events
// (FulfillmentService).
type ShipmentEvents interface {
	ApplyWMSEvent(ctx context.Context, ev WMSEvent) (*Order, error)
}

// WMSRouter sends each wms.events message to the service it is about:
// return events to after-sales, the rest to fulfillment.
type WMSRouter struct {
	Shipments ShipmentEvents
	Returns   *ReturnService
}

// ApplyWMSEvent implements the consumer's applier.
func (r WMSRouter) ApplyWMSEvent(ctx context.Context, ev WMSEvent) (*Order, error) {
	if ev.IsReturnEvent() {
		_, err := r.Returns.ApplyWMSEvent(ctx, ev)
		return nil, err
	}
	return r.Shipments.ApplyWMSEvent(ctx, ev)
}
