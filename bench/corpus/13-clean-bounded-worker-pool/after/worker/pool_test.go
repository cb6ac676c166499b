package worker

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestRunReturnsFirstError(t *testing.T) {
	boom := errors.New("boom")
	err := Run(context.Background(), []string{"a", "b", "c"}, 2,
		func(ctx context.Context, item string) error {
			if item == "b" {
				return boom
			}
			return nil
		})
	if !errors.Is(err, boom) {
		t.Fatalf("err=%v", err)
	}
}

func TestRunRespectsLimit(t *testing.T) {
	var inFlight, peak atomic.Int32
	items := make([]string, 50)
	err := Run(context.Background(), items, 4, func(ctx context.Context, _ string) error {
		now := inFlight.Add(1)
		for {
			old := peak.Load()
			if now <= old || peak.CompareAndSwap(old, now) {
				break
			}
		}
		inFlight.Add(-1)
		return nil
	})
	if err != nil || peak.Load() > 4 {
		t.Fatalf("err=%v peak=%d", err, peak.Load())
	}
}
