package upstream

import (
	"context"
	"maps"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A 2026-07-28 agent asks for the log messages of one request, in that
// request's _meta ("io.modelcontextprotocol/logLevel"), and gets them on
// that request's response stream. The pool's shared session serves many
// agents' calls at once, and a log message carries nothing that ties it
// to the call it came from (progress has its token; logs have none). So a
// call that wants logs takes a session of its own for its duration (a
// lease): whatever the upstream logs on that session while the call runs
// is that call's. Leased sessions are kept for the next such call, at
// most maxIdleLogSessions per upstream; calls that do not ask for logs
// never pay for them.
//
// stdio upstreams are the exception, as for Affinity: one child process
// per upstream, so such a call takes the shared session and gets no logs.

// maxIdleLogSessions bounds the sessions kept per upstream for calls that
// want log messages.
const maxIdleLogSessions = 4

// logLease is one call's hold on a session.
type logLease struct {
	fn    func(*mcp.LoggingMessageParams)
	level mcp.LoggingLevel
	// s is the session leased (set by session, cleared by drop).
	s *mcp.ClientSession

	mu   sync.Mutex
	last time.Time
}

// leasedSession is what logLevels keeps of a leased session.
type leasedSession struct {
	lease *logLease
	// level is the level last set on a legacy session (logging/setLevel).
	level mcp.LoggingLevel
}

// CallToolLogged is CallTool for a call that wants the upstream's log
// messages at level and above: each one the upstream sends while serving
// this call reaches onLog, all of them before the call returns (see
// settle). On a stdio upstream it is CallTool, without logs.
func (p *Pool) CallToolLogged(ctx context.Context, t Target, params *mcp.CallToolParams, level mcp.LoggingLevel, onLog func(*mcp.LoggingMessageParams), onProgress func(*mcp.ProgressNotificationParams)) (*mcp.CallToolResult, error) {
	if t.Transport == TransportStdio || onLog == nil || level == "" {
		return p.CallTool(ctx, t, params, onProgress)
	}
	meta := params.GetMeta()
	if meta == nil {
		meta = mcp.Meta{}
	}
	meta[mcp.MetaKeyLogLevel] = level
	params.SetMeta(meta)
	l := &logLease{fn: onLog, level: level}
	res, err := p.callTool(ctx, t, leased{p, l}, params, onProgress)
	settle(&l.mu, &l.last)
	p.release(t, l)
	return res, err
}

// CallLogged is Call for a request (resources/read, prompts/get) that
// wants the upstream's log messages at level and above, as CallToolLogged:
// fn's requests go on a leased session, and on a 2026-07-28 upstream carry
// level in their _meta (leaseLevel). On a stdio upstream it is Call,
// without logs.
func (p *Pool) CallLogged(ctx context.Context, t Target, level mcp.LoggingLevel, onLog func(*mcp.LoggingMessageParams), fn func(context.Context, *mcp.ClientSession) error) error {
	if t.Transport == TransportStdio || onLog == nil || level == "" {
		return p.Call(ctx, t, fn)
	}
	l := &logLease{fn: onLog, level: level}
	err := p.do(ctx, t, leased{p, l}, fn)
	settle(&l.mu, &l.last)
	p.release(t, l)
	return err
}

// leaseLevel is the logging sessions' sending middleware: a request on a
// leased 2026-07-28 session asks for the lease's level in its _meta.
func (p *Pool) leaseLevel(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		s, _ := req.GetSession().(*mcp.ClientSession)
		params := req.GetParams()
		if s == nil || strings.HasPrefix(method, "notifications/") || params == nil || reflect.ValueOf(params).IsNil() {
			return next(ctx, method, req)
		}
		if ir := s.InitializeResult(); ir == nil || ir.ProtocolVersion < "2026-07-28" {
			return next(ctx, method, req)
		}
		p.logMu.Lock()
		l := p.logSessions[s].lease
		p.logMu.Unlock()
		if l != nil {
			meta := maps.Clone(params.GetMeta())
			if meta == nil {
				meta = map[string]any{}
			}
			if _, set := meta[mcp.MetaKeyLogLevel]; !set {
				meta[mcp.MetaKeyLogLevel] = l.level
				params.SetMeta(meta)
			}
		}
		return next(ctx, method, req)
	}
}

// leased is the source of a logged call: an idle logging session of the
// upstream, or a new one.
type leased struct {
	p *Pool
	l *logLease
}

func (ls leased) session(ctx context.Context, c *conn) (*mcp.ClientSession, error) {
	p := ls.p
	c.mu.Lock()
	var s *mcp.ClientSession
	if n := len(c.logIdle); n > 0 {
		s = c.logIdle[n-1]
		c.logIdle = c.logIdle[:n-1]
	} else {
		var err error
		if s, err = p.dial(ctx, c, p.logClient(), false); err != nil {
			c.mu.Unlock()
			return nil, err
		}
	}
	c.mu.Unlock()
	p.logMu.Lock()
	held := p.logSessions[s]
	held.lease = ls.l
	p.logSessions[s] = held
	p.logMu.Unlock()
	ls.l.s = s
	// A legacy upstream takes the level per session, not per request.
	if ir := s.InitializeResult(); ir != nil && ir.ProtocolVersion < "2026-07-28" && held.level != ls.l.level {
		sctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
		err := s.SetLoggingLevel(sctx, &mcp.SetLoggingLevelParams{Level: ls.l.level})
		cancel()
		if err != nil {
			p.logger.Debug("upstream did not take the log level", "upstream", c.target.Key(), "error", err)
		} else {
			p.logMu.Lock()
			held.level = ls.l.level
			p.logSessions[s] = held
			p.logMu.Unlock()
		}
	}
	return s, nil
}

func (ls leased) drop(c *conn, s *mcp.ClientSession) {
	ls.p.logMu.Lock()
	delete(ls.p.logSessions, s)
	ls.p.logMu.Unlock()
	if ls.l.s == s {
		ls.l.s = nil
	}
	s.Close()
}

// release ends l's lease and keeps its session for the next logged call
// of t, unless enough are kept already.
func (p *Pool) release(t Target, l *logLease) {
	s := l.s
	if s == nil {
		return
	}
	p.logMu.Lock()
	held, ok := p.logSessions[s]
	if ok {
		held.lease = nil
		p.logSessions[s] = held
	}
	p.logMu.Unlock()
	c := p.conn(t)
	c.mu.Lock()
	if ok && len(c.logIdle) < maxIdleLogSessions {
		c.logIdle = append(c.logIdle, s)
		s = nil
	}
	c.mu.Unlock()
	if s != nil {
		p.logMu.Lock()
		delete(p.logSessions, s)
		p.logMu.Unlock()
		s.Close()
	}
}

// logClient returns the client of logging sessions, made on first use.
func (p *Pool) logClient() *mcp.Client {
	p.logOnce.Do(func() {
		p.logCl = mcp.NewClient(&mcp.Implementation{Name: "mcpmesh", Version: "1"}, &mcp.ClientOptions{
			Logger:                      p.logger,
			ProgressNotificationHandler: p.onProgress,
			MultiRoundTrip:              &mcp.MultiRoundTripOptions{Disabled: true},
			LoggingMessageHandler:       p.onLog,
		})
		p.logCl.AddSendingMiddleware(metaToken, p.leaseLevel)
	})
	return p.logCl
}

// onLog hands a log message to the call holding its session; one that
// comes while none does (after its call's settle) is dropped.
func (p *Pool) onLog(_ context.Context, req *mcp.LoggingMessageRequest) {
	p.logMu.Lock()
	l := p.logSessions[req.Session].lease
	p.logMu.Unlock()
	if l == nil {
		return
	}
	l.mu.Lock()
	l.last = time.Now()
	l.mu.Unlock()
	l.fn(req.Params)
}

// closeLogSessions closes c's idle logging sessions. c.mu must be held.
func (p *Pool) closeLogSessions(c *conn) {
	idle := c.logIdle
	c.logIdle = nil
	p.logMu.Lock()
	for _, s := range idle {
		delete(p.logSessions, s)
	}
	p.logMu.Unlock()
	for _, s := range idle {
		s.Close()
	}
}
