package oms

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// intakeMetrics are intake's collectors.
type intakeMetrics struct {
	outcomes *prometheus.CounterVec
	latency  prometheus.Histogram
	replans  prometheus.Counter
	reviews  *prometheus.CounterVec
	plans    *prometheus.CounterVec
	perOrder prometheus.Histogram
}

func newIntakeMetrics(reg prometheus.Registerer) (intakeMetrics, error) {
	m := intakeMetrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_intake_orders_total", Help: "Orders submitted, by channel and outcome.",
		}, []string{"channel", "outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "omsd_intake_duration_seconds", Help: "Time to take one order, from decoded request to answer.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}),
		replans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omsd_intake_replans_total", Help: "Orders planned again after losing a reservation race.",
		}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_intake_holds_total", Help: "Orders put in review (status on_hold), by reason.",
		}, []string{"reason"}),
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_sourcing_plans_total", Help: "Sourcing plans by outcome.",
		}, []string{"outcome"}),
		perOrder: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "omsd_sourcing_shipments_per_order", Help: "Shipments per sourced order (split rate).",
			Buckets: []float64{1, 2, 3, 4, 5, 8},
		}),
	}
	return m, register(reg, m.outcomes, m.latency, m.replans, m.reviews, m.plans, m.perOrder)
}

// outcomeLabel is the outcome label of one submission.
func outcomeLabel(res Result, err error) string {
	if err == nil {
		switch {
		case res.Created && res.Order.Status == OrderInReview:
			return "held"
		case res.Created:
			return "created"
		default:
			return "duplicate"
		}
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Slug {
		case SlugInsufficientStock, SlugIdempotencyConflict, SlugValidation, SlugLimitExceeded, SlugOverloaded:
			return string(e.Slug)
		}
		switch e.Kind {
		case KindUnavailable:
			return "unavailable"
		case KindInvalid:
			return "validation"
		}
	}
	return "error"
}
