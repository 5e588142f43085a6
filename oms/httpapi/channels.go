package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/omsd/omsd/oms"
)

// Channels is what the API needs of the channel store.
type Channels interface {
	// CreateChannel stores a channel with the SHA-256 of its API key; a
	// taken id is a KindConflict error.
	CreateChannel(ctx context.Context, c oms.Channel, keyHash []byte) error
	// ChannelByKeyHash finds the channel of a key; an unknown key is a
	// KindNotFound error.
	ChannelByKeyHash(ctx context.Context, hash []byte) (oms.Channel, error)
}

type createChannelRequest struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	RatePerSec float64 `json:"rate_per_sec"`
	Burst      int     `json:"burst"`
}

type createChannelResponse struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	APIKey     string  `json:"api_key"`
	RatePerSec float64 `json:"rate_per_sec"`
	Burst      int     `json:"burst"`
}

// createChannel stores a new channel and shows its key once. The key's
// hash is forgotten as "unknown" here, so the key works at once on this
// instance.
func (s *Server) createChannel(r *http.Request, req *createChannelRequest) (createChannelResponse, error) {
	var fs []oms.FieldError
	if !oms.ValidID(req.ID) {
		fs = append(fs, oms.FieldError{Field: "id", Message: "must be 1-64 letters, digits, '.', '_' or '-'"})
	}
	if strings.TrimSpace(req.Name) == "" || len(req.Name) > 200 {
		fs = append(fs, oms.FieldError{Field: "name", Message: "is required (at most 200 characters)"})
	}
	if req.RatePerSec < 0 || req.RatePerSec > 1e6 {
		fs = append(fs, oms.FieldError{Field: "rate_per_sec", Message: "must be between 0 (server default) and 1000000"})
	}
	if req.Burst < 0 || req.Burst > 1e6 {
		fs = append(fs, oms.FieldError{Field: "burst", Message: "must be between 0 (server default) and 1000000"})
	}
	if len(fs) > 0 {
		return createChannelResponse{}, oms.Invalid("the channel is not valid", fs...)
	}
	key, hash := s.newKey()
	c := oms.Channel{ID: req.ID, Name: req.Name, RatePerSec: req.RatePerSec, Burst: req.Burst}
	if err := s.channels.CreateChannel(r.Context(), c, hash); err != nil {
		return createChannelResponse{}, err
	}
	s.auth.unknown.created(string(hash))
	s.log.InfoContext(r.Context(), "channel created", "channel", c.ID)
	return createChannelResponse{ID: c.ID, Name: c.Name, APIKey: key, RatePerSec: c.RatePerSec, Burst: c.Burst}, nil
}
