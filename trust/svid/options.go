package svid

import (
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Option configures a Rotator. Options are sealed: only this package can
// implement them.
type Option interface {
	apply(*Rotator)
}

type optionFunc func(*Rotator)

func (f optionFunc) apply(r *Rotator) { f(r) }

// WithLogger sets the logger renewals and failed attempts are reported to.
// The default discards all logs.
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(r *Rotator) {
		if logger != nil {
			r.logger = logger
		}
	})
}

// WithOnRotate sets a function that Run calls after each renewal, with the
// new SVID, once it is being served; use it to update metrics or to reload
// listeners. It is not called for the first SVID, which NewRotator obtains.
// It runs on Run's goroutine and delays the next renewal while it runs, so it
// should return quickly.
func WithOnRotate(fn func(*x509svid.SVID)) Option {
	return optionFunc(func(r *Rotator) {
		r.onRotate = fn
	})
}
