package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/omsd/omsd/oms/httpapi/api"
)

// TestOpenAPIMatchesTheRoutes checks that every operation of the published
// document has a handler for its method and path.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Paths) == 0 {
		t.Fatalf("got openapi %q with %d paths", doc.OpenAPI, len(doc.Paths))
	}
	s, err := New(Config{AdminKey: "openapi-admin-key-0123456789"}, &memChannels{byHash: nil, byID: nil})
	if err != nil {
		t.Fatal(err)
	}
	s.Register(OrderRoutes(nil, nil, RateConfig{}))
	s.Register(FulfillmentRoutes(nil))
	s.Handler()
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			m := strings.ToUpper(method)
			concrete := strings.NewReplacer("{id}", "X1", "{node_id}", "N1", "{sku}", "S1").Replace(path)
			_, pattern := s.mux.Handler(httptest.NewRequest(m, concrete, nil))
			if pattern == "" || pattern == "/" {
				t.Errorf("%s %s is documented but has no handler", m, path)
				continue
			}
			documented[pattern] = true
		}
	}
	if len(documented) < 20 {
		t.Errorf("got %d documented routes with handlers, want every route of the v1 contract", len(documented))
	}
}
