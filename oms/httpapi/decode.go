package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/omsd/omsd/oms"
)

// readBody reads the whole request body up to the server's limit. A body
// over the limit is a 413; a body that is not valid UTF-8 is a 400
// (encoding/json would silently replace the bad bytes).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, oms.Errorf(oms.KindTooLarge, oms.SlugBodyTooLarge, "the request body exceeds %d bytes", s.cfg.MaxBodyBytes)
		}
		return nil, oms.Errorf(oms.KindBadRequest, oms.SlugBadBody, "the request body could not be read")
	}
	if !utf8.Valid(body) {
		return nil, oms.Errorf(oms.KindBadRequest, oms.SlugBadJSON, "the request body is not valid UTF-8")
	}
	return body, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data. Errors are 400 problems that say where the JSON is wrong.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return oms.Errorf(oms.KindBadRequest, oms.SlugBadJSON, "the request body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return oms.Errorf(oms.KindBadRequest, oms.SlugBadJSON, "the request body holds more than one JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return oms.Errorf(oms.KindBadRequest, oms.SlugBadJSON, "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		e := oms.Errorf(oms.KindBadRequest, oms.SlugBadJSON, "wrong type for %q: got JSON %s, want %s", te.Field, te.Value, te.Type)
		e.Fields = []oms.FieldError{{Field: te.Field, Message: fmt.Sprintf("must be %s", te.Type)}}
		return e
	case errors.Is(err, io.ErrUnexpectedEOF):
		return oms.Errorf(oms.KindBadRequest, oms.SlugBadJSON, "the JSON ends too early")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		e := oms.Errorf(oms.KindBadRequest, oms.SlugBadJSON, "unknown field %q", f)
		e.Fields = []oms.FieldError{{Field: f, Message: "is not a known field"}}
		return e
	default:
		return oms.Errorf(oms.KindBadRequest, oms.SlugBadJSON, "the body is not valid JSON: %v", err)
	}
}
