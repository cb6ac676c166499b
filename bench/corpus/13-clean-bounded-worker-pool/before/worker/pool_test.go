package worker

import (
	"errors"
	"testing"
)

func TestRunStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	err := Run([]string{"a", "b", "c"}, func(item string) error {
		calls++
		if item == "b" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 2 {
		t.Fatalf("err=%v calls=%d", err, calls)
	}
}
