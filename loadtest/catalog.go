package loadtest

import (
	"fmt"
	"math/rand/v2"
)

// City is a ship-to and store location: a real city with its ISO 3166-2:CN
// province code, centre coordinates and postal-code prefix.
type City struct {
	Code   string // short code used in node ids, e.g. HZ
	Name   string
	Region string // ISO 3166-2:CN, e.g. CN-ZJ
	Lat    float64
	Lon    float64
	Postal string // first digits of the city's postal codes
	Weight float64
}

// Cities is where orders ship to and stores stand, weighted roughly by
// online-retail volume.
var Cities = []City{
	{"HZ", "Hangzhou", "CN-ZJ", 30.2741, 120.1551, "3100", 6},
	{"NB", "Ningbo", "CN-ZJ", 29.8683, 121.5440, "3150", 3},
	{"SH", "Shanghai", "CN-SH", 31.2304, 121.4737, "2000", 10},
	{"NJ", "Nanjing", "CN-JS", 32.0603, 118.7969, "2100", 5},
	{"SU", "Suzhou", "CN-JS", 31.2989, 120.5853, "2150", 4},
	{"GZ", "Guangzhou", "CN-GD", 23.1291, 113.2644, "5100", 8},
	{"SZ", "Shenzhen", "CN-GD", 22.5431, 114.0579, "5180", 8},
	{"BJ", "Beijing", "CN-BJ", 39.9042, 116.4074, "1000", 10},
	{"TJ", "Tianjin", "CN-TJ", 39.3434, 117.3616, "3000", 4},
	{"CD", "Chengdu", "CN-SC", 30.5728, 104.0668, "6100", 6},
	{"CQ", "Chongqing", "CN-CQ", 29.5630, 106.5516, "4000", 5},
	{"WH", "Wuhan", "CN-HB", 30.5928, 114.3055, "4300", 5},
	{"CS", "Changsha", "CN-HN", 28.2282, 112.9388, "4100", 4},
	{"ZZ", "Zhengzhou", "CN-HA", 34.7466, 113.6253, "4500", 4},
	{"XA", "Xi'an", "CN-SN", 34.3416, 108.9398, "7100", 4},
	{"JN", "Jinan", "CN-SD", 36.6512, 117.1201, "2500", 3},
	{"QD", "Qingdao", "CN-SD", 36.0671, 120.3826, "2660", 3},
	{"XM", "Xiamen", "CN-FJ", 24.4798, 118.0894, "3610", 3},
	{"FZ", "Fuzhou", "CN-FJ", 26.0745, 119.2965, "3500", 2},
	{"SY", "Shenyang", "CN-LN", 41.8057, 123.4315, "1100", 3},
	{"KM", "Kunming", "CN-YN", 25.0389, 102.7183, "6500", 2},
	{"HF", "Hefei", "CN-AH", 31.8206, 117.2272, "2300", 3},
	{"HB", "Harbin", "CN-HL", 45.8038, 126.5350, "1500", 2},
	{"NN", "Nanning", "CN-GX", 22.8170, 108.3665, "5300", 2},
	{"SJ", "Shijiazhuang", "CN-HE", 38.0428, 114.5149, "0500", 2},
}

func cityByCode(code string) City {
	for _, c := range Cities {
		if c.Code == code {
			return c
		}
	}
	panic("loadtest: unknown city " + code)
}

// distributionCentres are the first nodes seeded, in this order. The first
// serves every region (empty list) so that every ship-to address has at
// least one candidate node; the others serve their part of the country.
var distributionCentres = []struct {
	city    string
	regions []string
}{
	{"HZ", nil},
	{"BJ", []string{"CN-BJ", "CN-TJ", "CN-HE", "CN-SD", "CN-LN", "CN-HL"}},
	{"GZ", []string{"CN-GD", "CN-GX", "CN-FJ", "CN-HN"}},
	{"CD", []string{"CN-SC", "CN-CQ", "CN-YN", "CN-SN"}},
	{"WH", []string{"CN-HB", "CN-HN", "CN-HA", "CN-AH", "CN-SN"}},
	{"SH", []string{"CN-SH", "CN-JS", "CN-ZJ", "CN-AH"}},
}

// BuildNodes returns n nodes: up to six distribution centres (warehouses
// with a large daily capacity), then stores in the cities of Cities in
// turn, each serving its own region. Coordinates of stores are jittered
// deterministically around the city centre.
func BuildNodes(n int) []Node {
	nodes := make([]Node, 0, n)
	for i := 0; i < n && i < len(distributionCentres); i++ {
		dc := distributionCentres[i]
		c := cityByCode(dc.city)
		nodes = append(nodes, Node{
			ID:            "WH-" + c.Code,
			Name:          c.Name + " DC",
			Type:          "warehouse",
			City:          c.Name,
			Location:      Location{Lat: c.Lat, Lon: c.Lon},
			Regions:       append([]string{}, dc.regions...),
			Priority:      10,
			DailyCapacity: 50000,
			Channels:      []string{},
			Active:        true,
		})
	}
	r := rand.New(rand.NewPCG(7, 11))
	for i := len(nodes); i < n; i++ {
		s := i - len(distributionCentres)
		c := Cities[s%len(Cities)]
		nodes = append(nodes, Node{
			ID:            fmt.Sprintf("ST-%s-%02d", c.Code, s/len(Cities)+1),
			Name:          fmt.Sprintf("%s store %d", c.Name, s/len(Cities)+1),
			Type:          "store",
			City:          c.Name,
			Location:      Location{Lat: round4(c.Lat + (r.Float64()-0.5)*0.1), Lon: round4(c.Lon + (r.Float64()-0.5)*0.1)},
			Regions:       []string{c.Region},
			Priority:      20,
			DailyCapacity: 300,
			Channels:      []string{},
			Active:        true,
		})
	}
	return nodes
}

func round4(f float64) float64 {
	if f < 0 {
		return -round4(-f)
	}
	return float64(int64(f*10000+0.5)) / 10000
}

// SKU is a catalogue item.
type SKU struct {
	ID    string `json:"id"`
	Price int64  `json:"price"` // CNY minor units
}

// SKUID is the id of the i-th SKU (1-based): SKU-000123.
func SKUID(i int) string { return fmt.Sprintf("SKU-%06d", i) }

// BuildSKUs returns n SKUs with deterministic prices between 9.90 and
// 599.90 CNY.
func BuildSKUs(n int) []SKU {
	skus := make([]SKU, n)
	r := rand.New(rand.NewPCG(3, 5))
	for i := range skus {
		skus[i] = SKU{ID: SKUID(i + 1), Price: int64(r.IntN(60)+1)*1000 - 10}
	}
	return skus
}

// StockPlan decides the seeded on-hand of sku index i (0-based) at node:
// warehouses carry the whole catalogue at `stock` units; stores carry
// about half of it (a deterministic choice per node and SKU) at a fifth of
// that, at least 1.
func StockPlan(node Node, nodeIndex, skuIndex int, stock int64) (int64, bool) {
	if node.Type != "store" {
		return stock, true
	}
	h := uint64(nodeIndex+1)*0x9E3779B97F4A7C15 ^ uint64(skuIndex+1)*0xBF58476D1CE4E5B9
	h ^= h >> 31
	if h%2 == 1 {
		return 0, false
	}
	return max(1, stock/5), true
}

// defaultChannels are the channels seeded, with their share of orders and
// the prefix of their external order ids.
var defaultChannels = []struct {
	id, name, prefix string
	weight           float64
}{
	{"tmall", "Tmall flagship", "TM", 35},
	{"jd", "JD.com store", "JD", 25},
	{"douyin", "Douyin shop", "DY", 20},
	{"wechat", "WeChat mini program", "WX", 12},
	{"web", "Brand web store", "WEB", 8},
}

var givenNames = []string{"Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yang", "Jie", "Qiang", "Li", "Tao", "Yan", "Hui", "Xin", "Hao"}
var familyNames = []string{"Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun", "Ma", "Zhu", "Hu"}
var streets = []string{"Renmin Rd", "Zhongshan Rd", "Jiefang Rd", "Jianshe Rd", "Heping Rd", "Wenyi Rd", "Xinhua Rd", "Huaihai Rd", "Yan'an Rd", "Binjiang Ave", "Keji Rd", "Chang'an St"}
