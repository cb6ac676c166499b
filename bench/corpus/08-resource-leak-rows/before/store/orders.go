package store

import (
	"context"
	"database/sql"
)

// Order is one customer order.
type Order struct {
	ID       int64
	Customer string
	TotalCts int64
}

// OrderByID loads one order.
func OrderByID(ctx context.Context, db *sql.DB, id int64) (Order, error) {
	var o Order
	err := db.QueryRowContext(ctx,
		"SELECT id, customer, total_cents FROM orders WHERE id = $1", id,
	).Scan(&o.ID, &o.Customer, &o.TotalCts)
	return o, err
}
