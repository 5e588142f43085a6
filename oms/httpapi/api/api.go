// Package api embeds omsd's published OpenAPI 3.1 document (openapi.yaml),
// the v1 contract; httpapi's tests check it against the registered routes.
package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of the v1 API.
//
//go:embed openapi.yaml
var OpenAPI []byte
