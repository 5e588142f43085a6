package sourcing_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/omsd/omsd/sourcing"
)

func TestExampleDocumentParsesAndIsInDocGo(t *testing.T) {
	data, err := os.ReadFile("testdata/example_rules.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := sourcing.ParseRules(data)
	if err != nil {
		t.Fatalf("ParseRules(example): got %v, want nil", err)
	}
	if r.Version != 7 || len(r.Strategies) != 4 || r.Strategies[2].Ranking.By[0].Costs["WH-HZ"]["CN-ZJ"] != 800 {
		t.Errorf("example decoded wrongly: %+v", r)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		lines = append(lines, "//\t"+l)
	}
	if !strings.Contains(string(doc), strings.Join(lines, "\n")) {
		t.Errorf("doc.go does not carry testdata/example_rules.json verbatim (indented with //<tab>)")
	}
}

func TestDefaultRulesRoundTrip(t *testing.T) {
	d := sourcing.DefaultRules()
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultRules().Validate(): got %v, want nil", err)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sourcing.ParseRules(b)
	if err != nil {
		t.Fatalf("ParseRules(DefaultRules JSON): got %v, want nil\n%s", err, b)
	}
	b2, _ := json.Marshal(p)
	if string(b) != string(b2) {
		t.Errorf("round trip: got %s, want %s", b2, b)
	}
	v := p.WithVersion(42)
	if v.Version != 42 || p.Version != 0 {
		t.Errorf("WithVersion: got %d (original %d), want 42 (original 0)", v.Version, p.Version)
	}
	o := order(ln("X", 1))
	if res := sourcing.Plan(&o, []sourcing.Node{node("A")}, sourcing.StockMap{"A": {"X": 1}}, v); res.Outcome != "fulfilled" {
		t.Errorf("plan with a versioned copy: got %s, want fulfilled", res.Outcome)
	}
}

func TestValidateListsEveryFieldAtFault(t *testing.T) {
	doc := `{
	  "version": -1,
	  "strategies": [
	    {"name": "a", "when": {"channels": [""], "min_value": 10, "max_value": 5},
	     "filters": [{"type": "active"}, {"type": "active"}, {"type": "teleport"},
	                 {"type": "sku_exclusion", "node_types": ["castle"]},
	                 {"type": "region", "tags": ["bulky"]}],
	     "ranking": {"mode": "weighted", "by": [{"type": "priority"}, {"type": "shipping_cost", "weight": 1}]},
	     "split": {"policy": "single_node", "max_nodes": 2, "split_lines": true},
	     "fallback": "cry"},
	    {"name": "a", "when": {},
	     "filters": [],
	     "ranking": {"mode": "fancy", "by": [{"type": "load", "weight": 2, "costs": {"X": {"*": 1}}}, {"type": "load"}]},
	     "split": {"policy": "fewest_nodes", "max_nodes": -1}},
	    {"name": "", "when": {}, "filters": [], "ranking": {"by": []}, "split": {"policy": "shotgun"}}
	  ]
	}`
	_, err := sourcing.ParseRules([]byte(doc))
	var ve *sourcing.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want a *ValidationError", err)
	}
	want := []string{
		"version",
		"fallback",
		"strategies[0].when.channels[0]",
		"strategies[0].when.max_value",
		"strategies[0].filters[1].type",
		"strategies[0].filters[2].type",
		"strategies[0].filters[3].tags",
		"strategies[0].filters[3].node_types[0]",
		"strategies[0].filters[4].tags",
		"strategies[0].ranking.by[0].weight",
		"strategies[0].ranking.by[1].costs",
		"strategies[0].split.max_nodes",
		"strategies[0].split.split_lines",
		"strategies[0].fallback",
		"strategies[1].name",
		"strategies[1].ranking.mode",
		"strategies[1].ranking.by[0].weight",
		"strategies[1].ranking.by[0].costs",
		"strategies[1].ranking.by[1].type",
		"strategies[1].split.max_nodes",
		"strategies[2].name",
		"strategies[2].split.policy",
	}
	var got []string
	for _, fe := range ve.Errors {
		got = append(got, fe.Field)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields at fault:\ngot  %q\nwant %q\nerrors: %v", got, want, err)
	}
	if !strings.HasPrefix(err.Error(), "sourcing: invalid rule set: version: must not be negative; fallback: is required") {
		t.Errorf("Error(): got %q", err.Error())
	}
	b, _ := json.Marshal(ve)
	if !strings.Contains(string(b), `{"field":"strategies[0].split.max_nodes","message":"single_node allows at most 1 node"}`) {
		t.Errorf("ValidationError JSON: got %s", b)
	}
}

func TestParseRulesIsStrict(t *testing.T) {
	valid := `{"strategies": [{"name": "s", "when": {}, "filters": [{"type": "active"}],
	  "ranking": {"by": [{"type": "priority"}]}, "split": {"policy": "single_node"}}], "fallback": "reject"}`
	if _, err := sourcing.ParseRules([]byte(valid)); err != nil {
		t.Fatalf("valid document: got %v, want nil", err)
	}
	cases := []struct {
		name, doc, field, msg string
	}{
		{"an unknown field is refused", strings.Replace(valid, `"fallback"`, `"fallbak": "x", "fallback"`, 1), "fallbak", "unknown field"},
		{"a nested unknown field is refused with its path", strings.Replace(valid, `"policy"`, `"polcy": 1, "policy"`, 1), "strategies[0].split.polcy", "unknown field"},
		{"a key that only matches when case is ignored is refused", strings.Replace(valid, `"fallback"`, `"Fallback"`, 1), "Fallback", `did you mean "fallback"`},
		{"a duplicate key is refused", strings.Replace(valid, `"fallback": "reject"`, `"fallback": "reject", "fallback": "hold"`, 1), "fallback", "duplicate key"},
		{"a duplicate map key is refused", `{"strategies": [{"name": "s", "filters": [], "ranking": {"by": [{"type": "shipping_cost", "costs": {"A": {"*": 1, "*": 2}}}]}, "split": {"policy": "single_node"}}], "fallback": "reject"}`, `strategies[0].ranking.by[0].costs["A"]["*"]`, "duplicate key"},
		{"invalid UTF-8 is refused", strings.Replace(valid, `"s"`, "\"s\xff\"", 1), "", "not valid UTF-8"},
		{"trailing data is refused", valid + ` {}`, "", "unexpected data after the document"},
		{"a syntax error names the byte", `{"strategies": [}`, "", "invalid JSON at byte"},
		{"truncated input is refused", `{"strategies": [`, "", "unexpected end of input"},
		{"empty input is refused", ``, "", "unexpected end of input"},
		{"a wrong type names the field", strings.Replace(valid, `"single_node"`, `3`, 1), "strategies[0].split.policy", "must be a string, got a number"},
		{"a fraction where an integer belongs is refused", strings.Replace(valid, `"single_node"}`, `"single_node", "max_nodes": 1.5}`, 1), "strategies[0].split.max_nodes", "must be an integer"},
		{"an object where a list belongs is refused", strings.Replace(valid, `"filters": [{"type": "active"}]`, `"filters": {}`, 1), "strategies[0].filters", "must be an array, got an object"},
		{"a huge integer is refused", strings.Replace(valid, `{"strategies"`, `{"version": 99999999999999999999, "strategies"`, 1), "version", "must be an integer (64-bit)"},
		{"nested arrays where an object belongs are refused", `{"strategies": ` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, "strategies[0]", "must be an object, got an array"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sourcing.ParseRules([]byte(tc.doc))
			var ve *sourcing.ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) != 1 {
				t.Fatalf("got %v, want a *ValidationError with one error", err)
			}
			fe := ve.Errors[0]
			if fe.Field != tc.field || !strings.Contains(fe.Message, tc.msg) {
				t.Errorf("got {%q %q}, want {%q ...%q...}", fe.Field, fe.Message, tc.field, tc.msg)
			}
		})
	}
}

func TestCompileTakesEditsIntoAccount(t *testing.T) {
	r := ruleSet(t, "reject", strat("s", single))
	o := order(ln("X", 1))
	nodes := []sourcing.Node{node("A", inactive), node("B")}
	stock := sourcing.StockMap{"A": {"X": 1}, "B": {"X": 1}}
	r.Strategies[0].Filters = filters("stock")
	c, err := r.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := shipped(sourcing.Plan(&o, nodes, stock, c)), "A{X:1}"; got != want {
		t.Errorf("after Compile: got %q, want %q", got, want)
	}
	r.Strategies[0].Split.Policy = "bogus"
	var ve *sourcing.ValidationError
	if _, err := r.Compile(); !errors.As(err, &ve) || ve.Errors[0].Field != "strategies[0].split.policy" {
		t.Errorf("Compile of an invalid set: got %v, want a *ValidationError on strategies[0].split.policy", err)
	}
}

func TestParsedRulesIgnoreLaterEditsOfTheDocument(t *testing.T) {
	r := ruleSet(t, "reject", strat("s", single))
	o := order(ln("X", 1))
	nodes := []sourcing.Node{node("A", inactive), node("B")}
	stock := sourcing.StockMap{"A": {"X": 1}, "B": {"X": 1}}
	before := sourcing.Plan(&o, nodes, stock, r)
	r.Strategies[0].Filters[0].Type = "stock" // not allowed, but must not corrupt a compiled set
	after := sourcing.Plan(&o, nodes, stock, r)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("got %+v, want %+v", after, before)
	}
}
