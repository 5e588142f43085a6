package httpapi

import "net/http"

// handleJSON is the decode-and-answer sequence every JSON route shares: it
// reads the body under the size cap, decodes it strictly into a Req, calls
// fn once, and answers status with fn's result as JSON, or fn's error
// through the one error mapper (writeError).
//
// Req chooses how its body is read:
//   - noBody: the body is not read at all (GET, and POSTs whose meaning is
//     all in the path);
//   - a type whose pointer has decodeBody: that method decodes it (an
//     optional body, a document passed on verbatim);
//   - anything else: decodeStrict (unknown fields and trailing data are a
//     400).
//
// Resp is encoded as JSON, except a reply, which also picks the status and
// headers of this one answer.
func handleJSON[Req, Resp any](s *Server, status int, fn func(r *http.Request, req *Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if _, skip := any(&req).(*noBody); !skip {
			body, err := s.readBody(w, r)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			if d, ok := any(&req).(bodyDecoder); ok {
				err = d.decodeBody(body)
			} else {
				err = decodeStrict(body, &req)
			}
			if err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		resp, err := fn(r, &req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if rp, ok := any(resp).(reply); ok {
			rp.write(w, status)
			return
		}
		writeJSON(w, status, resp)
	}
}

// noBody is the request type of routes that take no body.
type noBody struct{}

// bodyDecoder is a request type that decodes its own body (already read,
// capped and checked to be UTF-8).
type bodyDecoder interface {
	decodeBody(body []byte) error
}

// rawJSON is a body passed on verbatim, for a callee that parses and
// validates it itself.
type rawJSON []byte

func (d *rawJSON) decodeBody(body []byte) error {
	*d = body
	return nil
}

// reply is an answer whose status or headers depend on the call.
type reply struct {
	status   int    // 0: the route's status
	location string // the Location header, if any
	body     any    // encoded as JSON
	raw      []byte // an already encoded JSON document, used instead of body
}

func (rp reply) write(w http.ResponseWriter, status int) {
	if rp.status != 0 {
		status = rp.status
	}
	if rp.location != "" {
		w.Header().Set("Location", rp.location)
	}
	if rp.raw != nil {
		writeRaw(w, status, rp.raw)
		return
	}
	writeJSON(w, status, rp.body)
}
