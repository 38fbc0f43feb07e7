package upstream

import (
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// stdioTimedOut ends a request to a stdio upstream that ran out of its
// deadline (the pool's call timeout, or the caller's, such as the one
// another BU carried in Mcpmesh-Timeout) and returns the error the caller
// gets, which wraps context.DeadlineExceeded like an HTTP upstream's.
//
// go-sdk has already told the server the request is cancelled
// (notifications/cancelled). Unlike an HTTP session, the session is the
// server process, shared by every call to it: dropping it for one slow
// call would kill the others in flight and make this caller wait for the
// process to stop (go-sdk gives it seconds after closing its stdin). So the
// session is kept, and only a server that runs out of time on
// BreakerThreshold calls in a row, with no answer in between, is taken for
// stuck and restarted (counted as a failure, like a broken connection).
func (p *Pool) stdioTimedOut(c *conn, src source, s *mcp.ClientSession, err error) error {
	c.mu.Lock()
	c.timeouts++
	stuck := c.timeouts >= p.cfg.BreakerThreshold
	if stuck {
		c.timeouts = 0
	}
	c.mu.Unlock()
	err = fmt.Errorf("%s: %w", c.target.Key(), err)
	if stuck {
		p.logger.Warn("stdio upstream answered none of its last calls in time; restarting it", "upstream", c.target.Key(), "calls", p.cfg.BreakerThreshold)
		p.failed(c, err)
		if _, ok := src.(shared); !ok {
			src.drop(c, s)
			return err
		}
		// The next call starts a new server. Stopping this one takes
		// seconds (its stdin is closed, then it is signalled); no caller
		// waits for that.
		c.mu.Lock()
		if c.session == s {
			c.session = nil
		}
		c.mu.Unlock()
		p.restarts.Go(func() { s.Close() })
	}
	return err
}
