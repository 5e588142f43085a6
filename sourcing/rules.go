package sourcing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Filter types.
const (
	FilterActive       = "active"
	FilterRegion       = "region"
	FilterChannel      = "channel"
	FilterCapacity     = "capacity"
	FilterPickup       = "pickup"
	FilterSKUExclusion = "sku_exclusion"
	FilterStock        = "stock"
)

// Ranking criterion types.
const (
	RankPriority     = "priority"
	RankDistance     = "distance"
	RankShippingCost = "shipping_cost"
	RankStockDepth   = "stock_depth"
	RankLoad         = "load"
)

// Ranking modes.
const (
	ModeLexicographic = "lexicographic"
	ModeWeighted      = "weighted"
)

// Split policies.
const (
	PolicySingleNode  = "single_node"
	PolicyFewestNodes = "fewest_nodes"
	PolicyRanked      = "ranked"
)

// Fallback is what happens to an order that no strategy fills.
type Fallback string

// Fallbacks.
const (
	FallbackReject    Fallback = "reject"
	FallbackBackorder Fallback = "backorder"
	FallbackHold      Fallback = "hold"
)

// Limits on a rule-set document, checked by Validate. They bound the work of
// one Plan call.
const (
	MaxStrategies       = 64
	MaxFiltersPerStrat  = 32
	MaxConditionEntries = 1000
	MaxNameLen          = 128
)

// RuleSet is the sourcing rule-set document (see the package documentation
// for its JSON form). ParseRules, DefaultRules and Compile return a
// validated set together with a compiled form (lookup maps, filter codes)
// that Plan uses; it is immutable and safe for concurrent Plan calls. Plan
// does not see later edits of the document fields: edit a copy and call
// Compile, and use WithVersion to stamp a version. A RuleSet built as a Go
// literal and never compiled also works with Plan, but it is then validated
// and compiled on every call.
type RuleSet struct {
	// Version is set by the OMS when it activates the set; a document may
	// carry it too. 0 means "not yet activated".
	Version int64 `json:"version"`
	// Name is free text for people.
	Name string `json:"name,omitempty"`
	// Strategies are tried in order (see the package documentation).
	Strategies []Strategy `json:"strategies"`
	// Fallback applies when no strategy fills the order and the last
	// matching strategy has no fallback of its own, or none matched.
	Fallback Fallback `json:"fallback"`
	// Returns says where returned goods go back (returns.go); nil: to the
	// node that shipped them.
	Returns *ReturnRules `json:"returns,omitempty"`

	c *compiled
}

// Strategy is one way of sourcing orders that match its conditions.
type Strategy struct {
	Name     string     `json:"name"`
	When     Conditions `json:"when"`
	Filters  []Filter   `json:"filters"`
	Ranking  Ranking    `json:"ranking"`
	Split    Split      `json:"split"`
	Fallback Fallback   `json:"fallback,omitempty"` // empty: the rule set's fallback
}

// Conditions select the orders a strategy applies to. Every condition that
// is set must hold; an empty Conditions matches every order.
type Conditions struct {
	Channels []string `json:"channels,omitempty"`  // order channel in list
	Regions  []string `json:"regions,omitempty"`   // ship-to region in list
	MinValue *int64   `json:"min_value,omitempty"` // order value >= min
	MaxValue *int64   `json:"max_value,omitempty"` // order value <= max
	Tags     []string `json:"tags,omitempty"`      // some line has one of these SKU tags
	Pickup   *bool    `json:"pickup,omitempty"`    // order is (true) or is not (false) a pickup order
}

// Filter removes nodes. Only sku_exclusion takes parameters: it forbids nodes
// whose type is in NodeTypes, or whose id is in NodeIDs, to ship SKUs that
// carry one of Tags.
type Filter struct {
	Type      string   `json:"type"`
	Name      string   `json:"name,omitempty"` // shown in explanations; default: Type
	Tags      []string `json:"tags,omitempty"`
	NodeTypes []string `json:"node_types,omitempty"`
	NodeIDs   []string `json:"node_ids,omitempty"`
}

// Ranking orders the nodes that pass the filters.
type Ranking struct {
	// Mode is "lexicographic" (default: each criterion breaks the ties of
	// the previous one) or "weighted" (sum of weight x normalised value).
	Mode string      `json:"mode,omitempty"`
	By   []Criterion `json:"by"`
}

// Criterion is one ranking criterion.
type Criterion struct {
	Type string `json:"type"`
	// Weight is required (> 0) in weighted mode and not allowed otherwise.
	Weight float64 `json:"weight,omitempty"`
	// Costs is the shipping_cost table: node id -> ship-to region -> cost in
	// minor units. "*" as a region is that node's default; "*" as a node id
	// applies to nodes not listed.
	Costs map[string]map[string]int64 `json:"costs,omitempty"`
}

// Split is the split policy.
type Split struct {
	// Policy is "single_node", "fewest_nodes" or "ranked".
	Policy string `json:"policy"`
	// MaxNodes caps the number of shipments (0 = no cap); single_node
	// allows only 0 or 1.
	MaxNodes int `json:"max_nodes,omitempty"`
	// SplitLines allows one line's quantity to be split across nodes.
	SplitLines bool `json:"split_lines,omitempty"`
}

// FieldError is one problem in a rule-set document.
type FieldError struct {
	Field   string `json:"field"` // e.g. "strategies[1].split.max_nodes"
	Message string `json:"message"`
}

// ValidationError lists every field at fault in a rule-set document.
type ValidationError struct {
	Errors []FieldError `json:"errors"`
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("sourcing: invalid rule set: ")
	for i, fe := range e.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		if fe.Field != "" {
			b.WriteString(fe.Field)
			b.WriteString(": ")
		}
		b.WriteString(fe.Message)
	}
	return b.String()
}

// ParseRules decodes and validates a rule-set document. Decoding is strict:
// unknown fields, duplicate keys, keys that match a field only when case is
// ignored, invalid UTF-8 and trailing data are all refused (encoding/json
// would accept the last three). Syntax problems come back as a
// *ValidationError with one FieldError whose Field names the JSON path when it
// is known; rule problems come back as a *ValidationError listing every field
// at fault. The returned set is compiled and safe for concurrent use.
func ParseRules(data []byte) (*RuleSet, error) {
	if err := strictCheck(data, ruleSetShape); err != nil {
		return nil, &ValidationError{Errors: []FieldError{*err}}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r RuleSet
	if err := dec.Decode(&r); err != nil {
		return nil, &ValidationError{Errors: []FieldError{jsonFieldError(err)}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &ValidationError{Errors: []FieldError{{Message: "unexpected data after the document"}}}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	r.c = compile(&r)
	return &r, nil
}

func jsonFieldError(err error) FieldError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return FieldError{Field: te.Field, Message: "must be " + jsonKind(te.Type.Kind().String()) + ", got " + te.Value}
	}
	return FieldError{Message: strings.TrimPrefix(err.Error(), "json: ")}
}

func jsonKind(k string) string {
	switch k {
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "float64":
		return "a number"
	}
	return "an integer"
}

// MarshalJSON writes the document (compiled state is not part of it).
func (r *RuleSet) MarshalJSON() ([]byte, error) {
	type doc RuleSet
	d := doc(*r)
	d.c = nil
	if d.Strategies == nil {
		d.Strategies = []Strategy{}
	}
	return json.Marshal(d)
}

// Compile returns a validated, compiled deep copy of r, for rule sets built
// or edited in Go. Its error is the *ValidationError of ParseRules.
func (r *RuleSet) Compile() (*RuleSet, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return ParseRules(b)
}

// WithVersion returns a copy of r stamped with version v, sharing r's
// compiled state. The OMS calls it when it activates a set.
func (r *RuleSet) WithVersion(v int64) *RuleSet {
	cp := *r
	cp.Version = v
	return &cp
}

// Validate checks the document and returns a *ValidationError listing every
// field at fault, or nil.
func (r *RuleSet) Validate() error {
	var v validator
	if r.Version < 0 {
		v.add("version", "must not be negative")
	}
	v.name("name", r.Name, false)
	v.fallback("fallback", r.Fallback, true)
	switch {
	case len(r.Strategies) == 0:
		v.add("strategies", "at least one strategy is required")
	case len(r.Strategies) > MaxStrategies:
		v.add("strategies", "at most "+strconv.Itoa(MaxStrategies)+" strategies")
	}
	names := make(map[string]int, len(r.Strategies))
	for i := range r.Strategies {
		s := &r.Strategies[i]
		p := "strategies[" + strconv.Itoa(i) + "]"
		v.name(p+".name", s.Name, true)
		if j, dup := names[s.Name]; dup && s.Name != "" {
			v.add(p+".name", fmt.Sprintf("duplicate of strategies[%d].name", j))
		} else {
			names[s.Name] = i
		}
		v.conditions(p+".when", &s.When)
		v.filters(p+".filters", s.Filters)
		v.ranking(p+".ranking", &s.Ranking)
		v.split(p+".split", &s.Split)
		v.fallback(p+".fallback", s.Fallback, false)
	}
	v.returns("returns", r.Returns)
	if len(v.errs) > 0 {
		return &ValidationError{Errors: v.errs}
	}
	return nil
}

type validator struct{ errs []FieldError }

func (v *validator) add(field, msg string) { v.errs = append(v.errs, FieldError{field, msg}) }

func (v *validator) name(field, s string, required bool) {
	switch {
	case s == "" && required:
		v.add(field, "is required")
	case len(s) > MaxNameLen:
		v.add(field, "at most "+strconv.Itoa(MaxNameLen)+" bytes")
	}
}

func (v *validator) fallback(field string, f Fallback, required bool) {
	switch f {
	case FallbackReject, FallbackBackorder, FallbackHold:
	case "":
		if required {
			v.add(field, `is required: "reject", "backorder" or "hold"`)
		}
	default:
		v.add(field, `must be "reject", "backorder" or "hold", got `+strconv.Quote(string(f)))
	}
}

func (v *validator) list(field string, xs []string, allowed map[string]bool) {
	if len(xs) > MaxConditionEntries {
		v.add(field, "at most "+strconv.Itoa(MaxConditionEntries)+" entries")
		return
	}
	for i, x := range xs {
		f := field + "[" + strconv.Itoa(i) + "]"
		switch {
		case x == "":
			v.add(f, "must not be empty")
		case allowed != nil && !allowed[x]:
			v.add(f, "unknown value "+strconv.Quote(x))
		}
	}
}

func (v *validator) conditions(p string, c *Conditions) {
	v.list(p+".channels", c.Channels, nil)
	v.list(p+".regions", c.Regions, nil)
	v.list(p+".tags", c.Tags, nil)
	if c.MinValue != nil && *c.MinValue < 0 {
		v.add(p+".min_value", "must not be negative")
	}
	if c.MaxValue != nil && *c.MaxValue < 0 {
		v.add(p+".max_value", "must not be negative")
	}
	if c.MinValue != nil && c.MaxValue != nil && *c.MaxValue < *c.MinValue {
		v.add(p+".max_value", "must not be below min_value")
	}
}

var knownNodeTypes = map[string]bool{NodeWarehouse: true, NodeStore: true, NodeDropship: true}

var filterTypes = map[string]bool{
	FilterActive: true, FilterRegion: true, FilterChannel: true, FilterCapacity: true,
	FilterPickup: true, FilterSKUExclusion: true, FilterStock: true,
}

func (v *validator) filters(p string, fs []Filter) {
	if len(fs) > MaxFiltersPerStrat {
		v.add(p, "at most "+strconv.Itoa(MaxFiltersPerStrat)+" filters")
		return
	}
	seen := map[string]int{}
	for i := range fs {
		f := &fs[i]
		fp := p + "[" + strconv.Itoa(i) + "]"
		if !filterTypes[f.Type] {
			if f.Type == "" {
				v.add(fp+".type", "is required")
			} else {
				v.add(fp+".type", "unknown filter type "+strconv.Quote(f.Type))
			}
			continue
		}
		v.name(fp+".name", f.Name, false)
		if f.Type == FilterSKUExclusion {
			if len(f.Tags) == 0 {
				v.add(fp+".tags", "is required for sku_exclusion")
			}
			if len(f.NodeTypes) == 0 && len(f.NodeIDs) == 0 {
				v.add(fp, "sku_exclusion needs node_types or node_ids")
			}
			v.list(fp+".tags", f.Tags, nil)
			v.list(fp+".node_types", f.NodeTypes, knownNodeTypes)
			v.list(fp+".node_ids", f.NodeIDs, nil)
			continue
		}
		if j, dup := seen[f.Type]; dup {
			v.add(fp+".type", fmt.Sprintf("duplicate of %s[%d]", p, j))
		} else {
			seen[f.Type] = i
		}
		for _, x := range []struct {
			name string
			n    int
		}{{"tags", len(f.Tags)}, {"node_types", len(f.NodeTypes)}, {"node_ids", len(f.NodeIDs)}} {
			if x.n > 0 {
				v.add(fp+"."+x.name, "only sku_exclusion takes "+x.name)
			}
		}
	}
}

var rankTypes = map[string]bool{
	RankPriority: true, RankDistance: true, RankShippingCost: true, RankStockDepth: true, RankLoad: true,
}

func (v *validator) ranking(p string, r *Ranking) {
	weighted := false
	switch r.Mode {
	case "", ModeLexicographic:
	case ModeWeighted:
		weighted = true
	default:
		v.add(p+".mode", `must be "lexicographic" or "weighted", got `+strconv.Quote(r.Mode))
	}
	if weighted && len(r.By) == 0 {
		v.add(p+".by", "weighted mode needs at least one criterion")
	}
	seen := map[string]int{}
	for i := range r.By {
		c := &r.By[i]
		cp := p + ".by[" + strconv.Itoa(i) + "]"
		if !rankTypes[c.Type] {
			if c.Type == "" {
				v.add(cp+".type", "is required")
			} else {
				v.add(cp+".type", "unknown ranking type "+strconv.Quote(c.Type))
			}
		} else if j, dup := seen[c.Type]; dup {
			v.add(cp+".type", fmt.Sprintf("duplicate of %s.by[%d]", p, j))
		} else {
			seen[c.Type] = i
		}
		switch {
		case weighted && !(c.Weight > 0 && c.Weight <= 1e6):
			v.add(cp+".weight", "must be above 0 and at most 1000000 in weighted mode")
		case !weighted && c.Weight != 0:
			v.add(cp+".weight", "is only used in weighted mode")
		}
		if c.Type == RankShippingCost {
			if len(c.Costs) == 0 {
				v.add(cp+".costs", "is required for shipping_cost")
			}
			for node, row := range c.Costs {
				np := cp + ".costs[" + strconv.Quote(node) + "]"
				if node == "" {
					v.add(np, "node id must not be empty")
				}
				if len(row) == 0 {
					v.add(np, "needs at least one region")
				}
				for region, cost := range row {
					if region == "" {
						v.add(np, "region must not be empty")
					}
					if cost < 0 {
						v.add(np+"["+strconv.Quote(region)+"]", "cost must not be negative")
					}
				}
			}
		} else if c.Costs != nil {
			v.add(cp+".costs", "only shipping_cost takes costs")
		}
	}
}

func (v *validator) split(p string, s *Split) {
	switch s.Policy {
	case PolicySingleNode:
		if s.MaxNodes > 1 {
			v.add(p+".max_nodes", "single_node allows at most 1 node")
		}
		if s.SplitLines {
			v.add(p+".split_lines", "single_node cannot split a line across nodes")
		}
	case PolicyFewestNodes, PolicyRanked:
	case "":
		v.add(p+".policy", `is required: "single_node", "fewest_nodes" or "ranked"`)
	default:
		v.add(p+".policy", `must be "single_node", "fewest_nodes" or "ranked", got `+strconv.Quote(s.Policy))
	}
	if s.MaxNodes < 0 {
		v.add(p+".max_nodes", "must not be negative")
	}
}

// DefaultRules returns the default rule set:
//
//   - "pickup" (pickup orders): active, pickup, channel, capacity and stock
//     filters; priority ranking; single node; reject.
//   - "ship" (all other orders): active, region, channel, capacity and stock
//     filters; priority then distance (lexicographic); fewest nodes, lines
//     not split; reject.
//
// The rule set's fallback is reject.
func DefaultRules() *RuleSet {
	yes, no := true, false
	r := &RuleSet{
		Name: "default",
		Strategies: []Strategy{
			{
				Name: "pickup",
				When: Conditions{Pickup: &yes},
				Filters: []Filter{
					{Type: FilterActive}, {Type: FilterPickup}, {Type: FilterChannel},
					{Type: FilterCapacity}, {Type: FilterStock},
				},
				Ranking:  Ranking{Mode: ModeLexicographic, By: []Criterion{{Type: RankPriority}}},
				Split:    Split{Policy: PolicySingleNode},
				Fallback: FallbackReject,
			},
			{
				Name: "ship",
				When: Conditions{Pickup: &no},
				Filters: []Filter{
					{Type: FilterActive}, {Type: FilterRegion}, {Type: FilterChannel},
					{Type: FilterCapacity}, {Type: FilterStock},
				},
				Ranking:  Ranking{Mode: ModeLexicographic, By: []Criterion{{Type: RankPriority}, {Type: RankDistance}}},
				Split:    Split{Policy: PolicyFewestNodes},
				Fallback: FallbackReject,
			},
		},
		Fallback: FallbackReject,
	}
	r.c = compile(r)
	return r
}
