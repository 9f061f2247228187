package schemas

// Product is an item of the shop's catalog. Prices are part of the
// contract (the order service prices orders); stock is the inventory
// service's own data.
type Product struct {
	SKU          string `json:"sku"`
	Name         string `json:"name"`
	Price        Money  `json:"price"`
	InitialStock int    `json:"-"`
}

// Currency of the shop.
const Currency = "EUR"

// Products is the seeded catalog. sku-sold-out has no stock.
var Products = []Product{
	{SKU: "sku-mug", Name: "Choreo mug", Price: 1250, InitialStock: 500},
	{SKU: "sku-tee", Name: "Saga T-shirt", Price: 2200, InitialStock: 200},
	{SKU: "sku-hoodie", Name: "Compensation hoodie", Price: 4900, InitialStock: 80},
	{SKU: "sku-sticker", Name: "JetStream sticker pack", Price: 400, InitialStock: 5000},
	{SKU: "sku-sold-out", Name: "Limited edition poster", Price: 3500, InitialStock: 0},
}

// ProductBySKU finds a product.
func ProductBySKU(sku string) (Product, bool) {
	for _, p := range Products {
		if p.SKU == sku {
			return p, true
		}
	}
	return Product{}, false
}
