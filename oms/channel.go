package oms

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// Channel is a sales channel (a marketplace shop, the brand's app, a
// distributor) that submits orders with its own API key.
type Channel struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// RatePerSec and Burst configure the channel's token bucket; 0 means
	// the server default.
	RatePerSec float64 `json:"rate_per_sec,omitempty"`
	Burst      int     `json:"burst,omitempty"`
}

// NewAPIKey returns a fresh API key (256 random bits) and its hash, which
// is all the store keeps.
func NewAPIKey() (key string, hash []byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	key = "oms_" + base64.RawURLEncoding.EncodeToString(b)
	return key, HashKey(key)
}

// HashKey is the stored form of an API key.
func HashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}
