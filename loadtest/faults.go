package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Fault kinds that omsd dev carries out (see ARCHITECTURE.md, "Faults").
const (
	FaultPGStall       = "pg-stall"       // PostgreSQL frozen (SIGSTOP) for 5 s
	FaultOMSDKill      = "omsd-kill"      // kill -9 of one omsd serve, restarted 2 s later
	FaultRedisFlush    = "redis-flush"    // Redis loses every key
	FaultBrokerRestart = "broker-restart" // the broker stops for 5 s, comes back with its data
	FaultWMSPoison     = "wms-poison"     // malformed messages on wms.events
)

// FaultKinds lists every kind.
var FaultKinds = []string{FaultPGStall, FaultOMSDKill, FaultRedisFlush, FaultBrokerRestart, FaultWMSPoison}

// FaultWindowTail is how long after a fault's end its window of answers
// runs: the clients' view of the recovery.
const FaultWindowTail = 5 * time.Second

// FaultSpec is a fault to inject Offset into the run.
type FaultSpec struct {
	Kind   string
	Offset time.Duration
}

func (f FaultSpec) String() string { return f.Kind + "@" + f.Offset.String() }

// ParseFaultSpec reads KIND@OFFSET, e.g. pg-stall@30s.
func ParseFaultSpec(s string) (FaultSpec, error) {
	kind, off, ok := strings.Cut(strings.TrimSpace(s), "@")
	if !ok {
		return FaultSpec{}, fmt.Errorf("loadtest: fault %q: want KIND@OFFSET, e.g. pg-stall@30s", s)
	}
	known := false
	for _, k := range FaultKinds {
		known = known || k == kind
	}
	if !known {
		return FaultSpec{}, fmt.Errorf("loadtest: fault %q: unknown kind %q (want one of %s)", s, kind, strings.Join(FaultKinds, ", "))
	}
	d, err := time.ParseDuration(off)
	if err != nil || d < 0 {
		return FaultSpec{}, fmt.Errorf("loadtest: fault %q: offset %q is not a duration >= 0 (e.g. 30s)", s, off)
	}
	return FaultSpec{Kind: kind, Offset: d}, nil
}

// FaultEvent is what the injector says of a fault it carried out.
type FaultEvent struct {
	ID        int        `json:"id"`
	Kind      string     `json:"kind"`
	StartedAt time.Time  `json:"started_at"`
	Duration  int64      `json:"duration_ms"` // planned
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	Target    string     `json:"target,omitempty"`
	Detail    string     `json:"detail,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// FaultInjector carries faults out on the stack under test.
type FaultInjector interface {
	// Inject starts a fault and returns once it has taken effect.
	Inject(ctx context.Context, kind string) (FaultEvent, error)
	// Faults lists the faults carried out so far, with their end once
	// known.
	Faults(ctx context.Context) ([]FaultEvent, error)
}

// DevControl is the fault-injection endpoint of omsd dev
// (OMS_DEV_CONTROL_URL, OMS_DEV_CONTROL_TOKEN in stack.env).
type DevControl struct {
	URL, Token string
	HTTP       *http.Client // default: 15 s timeout, no proxy
}

// NewDevControl returns the control client of t, or an error when t has
// no control endpoint.
func NewDevControl(t Target) (*DevControl, error) {
	if t.ControlURL == "" || t.ControlToken == "" {
		return nil, errors.New("loadtest: faults need a stack run by omsd dev: OMS_DEV_CONTROL_URL and OMS_DEV_CONTROL_TOKEN (stack.env) are not set")
	}
	return &DevControl{URL: strings.TrimRight(t.ControlURL, "/"), Token: t.ControlToken}, nil
}

func (d *DevControl) do(ctx context.Context, method, path string, in, out any) error {
	hc := d.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil}}
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.URL+path, body)
	if err != nil {
		return fmt.Errorf("loadtest: fault control: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+d.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("loadtest: fault control: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var p problem
		_ = json.Unmarshal(b, &p)
		return fmt.Errorf("loadtest: fault control: %s %s: %d %s", method, path, resp.StatusCode, p.Detail)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("loadtest: fault control: %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Inject is POST /faults {"kind": kind}.
func (d *DevControl) Inject(ctx context.Context, kind string) (FaultEvent, error) {
	var ev FaultEvent
	err := d.do(ctx, http.MethodPost, "/faults", map[string]string{"kind": kind}, &ev)
	return ev, err
}

// Faults is GET /faults.
func (d *DevControl) Faults(ctx context.Context) ([]FaultEvent, error) {
	var out struct {
		Faults []FaultEvent `json:"faults"`
	}
	err := d.do(ctx, http.MethodGet, "/faults", nil, &out)
	return out.Faults, err
}

// FaultReport is one injected fault as the report shows it.
type FaultReport struct {
	Kind string `json:"kind"`
	// OffsetS is the intended offset into the run; StartS the actual one
	// (from the injector's clock), StartedAt the same as a time.
	OffsetS   float64   `json:"offset_s"`
	StartS    float64   `json:"start_s"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// DurationS runs from the start until the stack was whole again (the
	// planned duration while the end is unknown).
	DurationS float64 `json:"duration_s"`
	Ended     bool    `json:"ended"`
	Target    string  `json:"target,omitempty"`
	Detail    string  `json:"detail,omitempty"`
	// Error is set when the fault could not be injected (or restored).
	Error string `json:"error,omitempty"`
	// Window counts the final outcome of the requests that completed in
	// [start, start+duration+FaultWindowTail], by status ("201", "409",
	// "503", "error", ...), and Retries the extra attempts they took.
	WindowS [2]float64       `json:"window_s"`
	Window  map[string]int64 `json:"window_status_counts"`
	Retries int64            `json:"window_retries"`
	GaveUp  int64            `json:"window_gave_up"`

	id int
}

// statusEvent is one request's final outcome at its completion time.
type statusEvent struct {
	at      time.Duration // since the start of the run
	status  string
	retries int
	gaveUp  bool
}

// faultWindows fills the window counts of every fault from the outcomes.
func faultWindows(faults []FaultReport, events []statusEvent) {
	sort.Slice(events, func(i, j int) bool { return events[i].at < events[j].at })
	for i := range faults {
		f := &faults[i]
		f.Window = map[string]int64{}
		if f.Error != "" && f.StartedAt.IsZero() {
			continue
		}
		from := time.Duration(f.StartS * float64(time.Second))
		to := from + time.Duration(f.DurationS*float64(time.Second)) + FaultWindowTail
		f.WindowS = [2]float64{round3(from.Seconds()), round3(to.Seconds())}
		lo := sort.Search(len(events), func(k int) bool { return events[k].at >= from })
		for k := lo; k < len(events) && events[k].at <= to; k++ {
			f.Window[events[k].status]++
			f.Retries += int64(events[k].retries)
			if events[k].gaveUp {
				f.GaveUp++
			}
		}
	}
}

// UpdateFaults completes the fault records of res with what the injector
// knows now (the end of each fault), and counts the answers in each
// fault's window. Call it after the run; faults still in progress keep
// their planned duration.
func UpdateFaults(ctx context.Context, inj FaultInjector, res *Result) error {
	var err error
	if inj != nil && len(res.Faults) > 0 {
		var evs []FaultEvent
		evs, err = inj.Faults(ctx)
		byID := map[int]FaultEvent{}
		for _, e := range evs {
			byID[e.ID] = e
		}
		for i := range res.Faults {
			f := &res.Faults[i]
			e, ok := byID[f.id]
			if !ok || f.id == 0 {
				continue
			}
			if e.EndedAt != nil {
				f.DurationS, f.Ended = round3(e.EndedAt.Sub(e.StartedAt).Seconds()), true
			}
			if e.Error != "" && f.Error == "" {
				f.Error = e.Error
			}
			if e.Detail != "" {
				f.Detail = e.Detail
			}
		}
	}
	faultWindows(res.Faults, res.events)
	return err
}
