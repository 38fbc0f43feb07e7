package apply

import (
	"context"
	"fmt"
	"slices"
)

// Apply executes a plan: it submits every card to create, puts every
// tenant to create or update and replaces the policy set, in plan order, and returns the result: a copy
// of the plan with Applied set on each object written. A card the registry
// answers "unchanged" for (someone submitted it since the plan was made)
// becomes Unchanged.
//
// A plan with conflicts is refused whole with ErrConflicts before any
// write. Apply stops at the first failed write and returns the result so
// far with the error; applying the catalog again finishes the job, since
// every step is idempotent. p is not modified.
func Apply(ctx context.Context, c Client, p *Plan) (*Plan, error) {
	if n := p.Counts().Conflict; n > 0 {
		return nil, fmt.Errorf("%s: %w", plural(n, "conflict"), ErrConflicts)
	}
	out := *p
	out.Changes = slices.Clone(p.Changes)
	for i := range out.Changes {
		ch := &out.Changes[i]
		if ch.Action != Create && ch.Action != Update {
			continue
		}
		switch ch.Kind {
		case KindServer:
			res, err := c.Submit(ctx, ch.raw)
			if err != nil {
				return &out, fmt.Errorf("submit %s (%s): %w", ch.Ref(), ch.File, err)
			}
			ch.State = res.State
			ch.RegisteredHash = ch.Hash
			if res.Unchanged {
				ch.Action = Unchanged
				continue
			}
		case KindTenant:
			if _, err := c.PutTenant(ctx, ch.tenant); err != nil {
				return &out, fmt.Errorf("put %s (%s:%d): %w", ch.Ref(), ch.File, ch.Line, err)
			}
		case KindPolicies:
			if _, err := c.PutPolicies(ctx, ch.policies); err != nil {
				return &out, fmt.Errorf("put the policy set (%s): %w", ch.File, err)
			}
		case KindLimits:
			if _, err := c.PutLimits(ctx, ch.limits); err != nil {
				return &out, fmt.Errorf("put the rate limit set (%s): %w", ch.File, err)
			}
		case KindQuotas:
			if _, err := c.PutQuotas(ctx, ch.quotas); err != nil {
				return &out, fmt.Errorf("put the quota set (%s): %w", ch.File, err)
			}
		case KindExports:
			if _, err := c.PutExports(ctx, ch.exports); err != nil {
				return &out, fmt.Errorf("put the export set (%s): %w", ch.File, err)
			}
		}
		ch.Applied = true
	}
	return &out, nil
}
