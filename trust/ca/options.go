package ca

import "time"

// Option configures a CA when it is created or loaded. Options are sealed:
// only this package can implement them.
type Option interface {
	apply(*options)
}

type options struct {
	now func() time.Time
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithClock sets the clock a CA reads when it generates its root and issues
// X509-SVIDs. The default is time.Now. Tests use it to issue certificates
// that are already expired or close to the CA's own expiry.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) {
		if now != nil {
			o.now = now
		}
	})
}

func newOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	return o
}
