package state

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWatermark(t *testing.T) {
	var w Watermark
	w.Raise(5)
	w.Raise(3)
	if w.Load() != 5 {
		t.Fatalf("Raise moved the index down: %d", w.Load())
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Wait(context.Background(), 7)
		done <- err
	}()
	w.Raise(6)
	select {
	case err := <-done:
		t.Fatalf("Wait(7) returned at index 6: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	w.Raise(7)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait(7) did not return within 10s of Raise(7)")
	}
	w.Reset(2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if cur, err := w.Wait(ctx, 3); !errors.Is(err, context.Canceled) || cur != 2 {
		t.Fatalf("Wait after Reset(2) with an ended context = %d, %v", cur, err)
	}
}
