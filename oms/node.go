package oms

import (
	"regexp"
	"strconv"
	"strings"
)

// Location is a point on Earth in degrees.
type Location struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Node is a fulfillment node: a warehouse, a store or a drop-shipper.
type Node struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Type          string   `json:"type"`
	Location      Location `json:"location"`
	Regions       []string `json:"regions"`
	Priority      int      `json:"priority"`
	DailyCapacity int64    `json:"daily_capacity"`
	Channels      []string `json:"channels"`
	Active        bool     `json:"active"`
}

// Node types.
const (
	NodeWarehouse = "warehouse"
	NodeStore     = "store"
	NodeDropship  = "dropship"
)

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	regionPattern = regexp.MustCompile(`^[A-Z]{2}(-[A-Z0-9]{1,3})?$`)
)

// ValidID reports whether s is a valid node, channel or SKU identifier: 1
// to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// ValidRegion reports whether s is an ISO 3166-1 country or ISO 3166-2
// subdivision code ("CN", "CN-ZJ").
func ValidRegion(s string) bool { return regionPattern.MatchString(s) }

// Validate checks the node and returns a KindInvalid *Error naming every
// field at fault, or nil.
func (n *Node) Validate() error {
	var fs []FieldError
	if !ValidID(n.ID) {
		fs = append(fs, FieldError{"id", "must be 1-64 letters, digits, '.', '_' or '-'"})
	}
	if strings.TrimSpace(n.Name) == "" || len(n.Name) > 200 {
		fs = append(fs, FieldError{"name", "is required (at most 200 characters)"})
	}
	switch n.Type {
	case NodeWarehouse, NodeStore, NodeDropship:
	default:
		fs = append(fs, FieldError{"type", "must be warehouse, store or dropship"})
	}
	if n.Location.Lat < -90 || n.Location.Lat > 90 {
		fs = append(fs, FieldError{"location.lat", "must be between -90 and 90"})
	}
	if n.Location.Lon < -180 || n.Location.Lon > 180 {
		fs = append(fs, FieldError{"location.lon", "must be between -180 and 180"})
	}
	if len(n.Regions) > 500 {
		fs = append(fs, FieldError{"regions", "at most 500 regions"})
	}
	for i, r := range n.Regions {
		if !ValidRegion(r) {
			fs = append(fs, FieldError{fieldIndex("regions", i), "must be an ISO 3166-2 code such as CN-ZJ"})
		}
	}
	if len(n.Channels) > 500 {
		fs = append(fs, FieldError{"channels", "at most 500 channels"})
	}
	for i, c := range n.Channels {
		if !ValidID(c) {
			fs = append(fs, FieldError{fieldIndex("channels", i), "must be a channel id"})
		}
	}
	if n.DailyCapacity < 0 {
		fs = append(fs, FieldError{"daily_capacity", "must not be negative (0 = unlimited)"})
	}
	if n.Regions == nil {
		n.Regions = []string{}
	}
	if n.Channels == nil {
		n.Channels = []string{}
	}
	if len(fs) > 0 {
		return Invalid("the node is not valid", fs...)
	}
	return nil
}

func fieldIndex(name string, i int) string {
	return name + "[" + strconv.Itoa(i) + "]"
}
