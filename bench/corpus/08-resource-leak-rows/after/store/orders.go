package store

import (
	"context"
	"database/sql"
	"errors"
)

// Order is one customer order.
type Order struct {
	ID       int64
	Customer string
	TotalCts int64
}

// ErrTooMany is returned when a customer has more open orders than the caller accepts.
var ErrTooMany = errors.New("too many open orders")

// OrderByID loads one order.
func OrderByID(ctx context.Context, db *sql.DB, id int64) (Order, error) {
	var o Order
	err := db.QueryRowContext(ctx,
		"SELECT id, customer, total_cents FROM orders WHERE id = $1", id,
	).Scan(&o.ID, &o.Customer, &o.TotalCts)
	return o, err
}

// OpenOrders lists a customer's open orders, at most max of them.
func OpenOrders(ctx context.Context, db *sql.DB, customer string, max int) ([]Order, error) {
	rows, err := db.QueryContext(ctx,
		"SELECT id, customer, total_cents FROM orders WHERE customer = $1 AND status = 'open'",
		customer,
	)
	if err != nil {
		return nil, err
	}
	var orders []Order
	for rows.Next() {
		if len(orders) == max {
			return nil, ErrTooMany
		}
		var o Order
		if err := rows.Scan(&o.ID, &o.Customer, &o.TotalCts); err != nil {
			return nil, err
		}
		orders = append(orders, o)
	}
	return orders, rows.Err()
}
