package redisstock

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a reservation, the label of omsd_inventory_reservations_total.
const (
	outcomeOK           = "ok"
	outcomeInsufficient = "insufficient"
	outcomeNotReady     = "not_ready"
	outcomeDuplicate    = "duplicate" // a repeat of an open hold: nothing more reserved
	outcomeClosed       = "closed"    // the id of a closed hold
	outcomeConflict     = "conflict"  // the id of an open hold with other lines
	outcomeInvalid      = "invalid"
	outcomeError        = "error"
)

// metrics are nil-safe: a Store built without a Registerer records nothing.
type metrics struct {
	reservations *prometheus.CounterVec
	units        *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	takes        *prometheus.CounterVec
}

// newMetrics registers the collectors on reg; nil reg means no metrics. A
// collector already registered (a second Store on the same registry) is
// shared rather than an error.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		reservations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_inventory_reservations_total",
			Help: "Reservation attempts by outcome (ok, insufficient, not_ready, duplicate, closed, conflict, invalid, error).",
		}, []string{"outcome"}),
		units: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_inventory_units_total",
			Help: "Units reserved, released, committed (shipped), expired, restored (holds re-added) and restocked (returns).",
		}, []string{"op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "omsd_inventory_script_duration_seconds",
			Help:    "Round-trip time of the inventory Lua scripts, by script.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14), // 100 µs .. 0.8 s
		}, []string{"script"}),
		takes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_inventory_limit_takes_total",
			Help: "Purchase-limit takes by outcome (ok, exceeded, duplicate, error).",
		}, []string{"outcome"}),
	}
	var err error
	if m.reservations, err = register(reg, m.reservations); err != nil {
		return nil, err
	}
	if m.units, err = register(reg, m.units); err != nil {
		return nil, err
	}
	if m.latency, err = register(reg, m.latency); err != nil {
		return nil, err
	}
	if m.takes, err = register(reg, m.takes); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("redisstock: register metrics: %w", err)
	}
	return c, nil
}

func (m *metrics) reservation(outcome string) {
	if m != nil {
		m.reservations.WithLabelValues(outcome).Inc()
	}
}

func (m *metrics) addUnits(op string, n int64) {
	if m != nil && n > 0 {
		m.units.WithLabelValues(op).Add(float64(n))
	}
}

func (m *metrics) observe(script string, d time.Duration) {
	if m != nil {
		m.latency.WithLabelValues(script).Observe(d.Seconds())
	}
}

func (m *metrics) take(outcome string) {
	if m != nil {
		m.takes.WithLabelValues(outcome).Inc()
	}
}
