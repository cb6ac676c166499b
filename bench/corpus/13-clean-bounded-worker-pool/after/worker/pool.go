package worker

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Run calls fn for every item with at most limit calls in flight and returns the first
// error; the context passed to fn is cancelled once any call fails.
func Run(ctx context.Context, items []string, limit int, fn func(context.Context, string) error) error {
	if limit < 1 {
		limit = 1
	}
	group, ctx := errgroup.WithContext(ctx)
	group.SetLimit(limit)
	for _, item := range items {
		item := item
		group.Go(func() error {
			return fn(ctx, item)
		})
	}
	return group.Wait()
}
