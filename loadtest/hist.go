package loadtest

import (
	"fmt"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram records durations with HdrHistogram at microsecond resolution,
// from 1µs to 1h (longer values are clamped to 1h). It is not safe for
// concurrent use.
type Histogram struct {
	h *hdrhistogram.Histogram
}

const histMax = int64(time.Hour / time.Microsecond)

// NewHistogram keeps 3 significant digits (0.1% error).
func NewHistogram() *Histogram { return &Histogram{hdrhistogram.New(1, histMax, 3)} }

// newSecondHistogram keeps 2 significant digits: one per second of a run.
func newSecondHistogram() *Histogram { return &Histogram{hdrhistogram.New(1, histMax, 2)} }

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	us := min(max(int64(d/time.Microsecond), 1), histMax)
	_ = h.h.RecordValue(us) // in range by construction
}

// Count is the number of recorded values.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Quantile returns the value at q in [0,1] (0 when empty).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.h.TotalCount() == 0 {
		return 0
	}
	return time.Duration(h.h.ValueAtQuantile(q*100)) * time.Microsecond
}

// Max is the largest value recorded (at histogram resolution).
func (h *Histogram) Max() time.Duration {
	if h.h.TotalCount() == 0 {
		return 0
	}
	return time.Duration(h.h.Max()) * time.Microsecond
}

// Mean is the mean of the recorded values.
func (h *Histogram) Mean() time.Duration {
	return time.Duration(h.h.Mean() * float64(time.Microsecond))
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

func fmtMs(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0fms", ms(d))
	default:
		return fmt.Sprintf("%.2fms", ms(d))
	}
}
