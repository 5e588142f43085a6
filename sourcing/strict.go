package sourcing

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// encoding/json (v1) accepts documents other parsers read differently: it
// matches keys to fields ignoring case, keeps the last of duplicate keys and
// replaces invalid UTF-8. The rule set is a public document that people edit
// by hand, so ParseRules first walks the tokens against the shape of the Go
// types and refuses all three, naming the JSON path.

type shapeKind uint8

const (
	shapeAny shapeKind = iota
	shapeString
	shapeInt
	shapeFloat
	shapeBool
	shapeStruct
	shapeMap
	shapeArray
)

type shape struct {
	kind   shapeKind
	fields map[string]*shape // struct: exact JSON names
	elem   *shape            // map values, array elements
}

func shapeOf(t reflect.Type) *shape {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		s := &shape{kind: shapeStruct, fields: map[string]*shape{}}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			s.fields[name] = shapeOf(f.Type)
		}
		return s
	case reflect.Map:
		return &shape{kind: shapeMap, elem: shapeOf(t.Elem())}
	case reflect.Slice, reflect.Array:
		return &shape{kind: shapeArray, elem: shapeOf(t.Elem())}
	case reflect.String:
		return &shape{kind: shapeString}
	case reflect.Bool:
		return &shape{kind: shapeBool}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &shape{kind: shapeInt}
	case reflect.Float32, reflect.Float64:
		return &shape{kind: shapeFloat}
	}
	return &shape{kind: shapeAny}
}

var ruleSetShape = shapeOf(reflect.TypeFor[RuleSet]())

const maxJSONDepth = 32

// strictCheck returns nil when data is one well-formed JSON value whose
// object keys are exact and unique where the shape knows them.
func strictCheck(data []byte, s *shape) *FieldError {
	if !utf8.Valid(data) {
		return &FieldError{Message: "document is not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if fe := walkJSON(dec, s, "", 0); fe != nil {
		return fe
	}
	return nil
}

func syntaxError(dec *json.Decoder, err error) *FieldError {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &FieldError{Message: "invalid JSON at byte " + strconv.FormatInt(se.Offset, 10) + ": " + se.Error()}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{Message: "invalid JSON: unexpected end of input"}
	}
	return &FieldError{Message: "invalid JSON at byte " + strconv.FormatInt(dec.InputOffset(), 10) + ": " + err.Error()}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func walkJSON(dec *json.Decoder, s *shape, path string, depth int) *FieldError {
	if depth > maxJSONDepth {
		return &FieldError{Field: path, Message: "nested too deeply"}
	}
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(dec, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return checkScalar(tok, s, path)
	}
	if s != nil {
		switch {
		case d == '{' && s.kind != shapeStruct && s.kind != shapeMap && s.kind != shapeAny,
			d == '[' && s.kind != shapeArray && s.kind != shapeAny:
			return &FieldError{Field: path, Message: "must be " + s.want() + ", got " + map[json.Delim]string{'{': "an object", '[': "an array"}[d]}
		}
	}
	switch d {
	case '{':
		seen := make(map[string]struct{})
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return syntaxError(dec, err)
			}
			key, _ := kt.(string)
			var child *shape
			var kpath string
			if s != nil && s.kind == shapeMap {
				kpath = path + "[" + strconv.Quote(key) + "]"
				child = s.elem
			} else {
				kpath = join(path, key)
			}
			if _, dup := seen[key]; dup {
				return &FieldError{Field: kpath, Message: "duplicate key"}
			}
			seen[key] = struct{}{}
			if s != nil && s.kind == shapeStruct {
				c, ok := s.fields[key]
				if !ok {
					msg := "unknown field"
					for name := range s.fields {
						if strings.EqualFold(name, key) {
							msg = "unknown field (names are case-sensitive: did you mean " + strconv.Quote(name) + "?)"
						}
					}
					return &FieldError{Field: kpath, Message: msg}
				}
				child = c
			}
			if fe := walkJSON(dec, child, kpath, depth+1); fe != nil {
				return fe
			}
		}
	case '[':
		var elem *shape
		if s != nil && s.kind == shapeArray {
			elem = s.elem
		}
		for i := 0; dec.More(); i++ {
			if fe := walkJSON(dec, elem, path+"["+strconv.Itoa(i)+"]", depth+1); fe != nil {
				return fe
			}
		}
	}
	if _, err := dec.Token(); err != nil { // closing delimiter
		return syntaxError(dec, err)
	}
	return nil
}

func (s *shape) want() string {
	switch s.kind {
	case shapeString:
		return "a string"
	case shapeInt:
		return "an integer"
	case shapeFloat:
		return "a number"
	case shapeBool:
		return "a boolean"
	case shapeStruct, shapeMap:
		return "an object"
	case shapeArray:
		return "an array"
	}
	return "a value"
}

// checkScalar checks a string, number, boolean or null token against s.
// null is accepted anywhere (it leaves the zero value, as encoding/json does).
func checkScalar(tok json.Token, s *shape, path string) *FieldError {
	if s == nil || s.kind == shapeAny || tok == nil {
		return nil
	}
	var got string
	switch v := tok.(type) {
	case string:
		if s.kind == shapeString {
			return nil
		}
		got = "a string"
	case bool:
		if s.kind == shapeBool {
			return nil
		}
		got = "a boolean"
	case json.Number:
		switch s.kind {
		case shapeInt:
			if _, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return nil
			}
			return &FieldError{Field: path, Message: "must be an integer (64-bit), got " + string(v)}
		case shapeFloat:
			if f, err := strconv.ParseFloat(string(v), 64); err == nil && !math.IsInf(f, 0) {
				return nil
			}
			return &FieldError{Field: path, Message: "number out of range: " + string(v)}
		}
		got = "a number"
	}
	return &FieldError{Field: path, Message: "must be " + s.want() + ", got " + got}
}
