package sourcing

import "math"

const earthRadiusKm = 6371.0088 // mean Earth radius (IUGG)

// DistanceKm is the great-circle (haversine) distance between two points
// given in degrees.
func DistanceKm(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	sdLat := math.Sin((lat2 - lat1) * rad / 2)
	sdLon := math.Sin((lon2 - lon1) * rad / 2)
	a := sdLat*sdLat + math.Cos(lat1*rad)*math.Cos(lat2*rad)*sdLon*sdLon
	if a > 1 {
		a = 1
	}
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(a))
}

// nodeDistance is the distance from n to the order's ship-to point, and false
// when either point is unknown: the order has no location, the node is at
// (0, 0) (how the OMS stores "no location"), or a coordinate is out of range.
func nodeDistance(o *Order, n *Node) (float64, bool) {
	if !o.HasLocation || (n.Lat == 0 && n.Lon == 0) || !validCoord(o.Lat, o.Lon) || !validCoord(n.Lat, n.Lon) {
		return 0, false
	}
	return DistanceKm(o.Lat, o.Lon, n.Lat, n.Lon), true
}

func validCoord(lat, lon float64) bool {
	return lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180 // false for NaN too
}
