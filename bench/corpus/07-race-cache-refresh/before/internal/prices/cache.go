package prices

import "sync"

// Cache holds the latest price of each product, filled on demand.
type Cache struct {
	mu     sync.Mutex
	prices map[string]int64
	source Source
}

// Source is the pricing service.
type Source interface {
	Price(sku string) (int64, error)
	All() (map[string]int64, error)
}

func NewCache(source Source) *Cache {
	return &Cache{prices: make(map[string]int64), source: source}
}

// Get returns the cached price of sku, asking the source on a miss.
func (c *Cache) Get(sku string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if price, ok := c.prices[sku]; ok {
		return price, nil
	}
	price, err := c.source.Price(sku)
	if err != nil {
		return 0, err
	}
	c.prices[sku] = price
	return price, nil
}
