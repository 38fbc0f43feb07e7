package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/cluster"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Client calls a node's admin API. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Addr is the node's base URL, e.g. http://127.0.0.1:7101.
	Addr string
	// Token is the bootstrap admin token, if authenticating by token.
	Token string
	// TLS is used for https addresses (an admin SVID and the trust bundle).
	TLS *tls.Config
	// Timeout bounds each request. Default 30s.
	Timeout time.Duration
}

// NewClient checks the address and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.Addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-addr %q: want a URL such as http://127.0.0.1:7101", cfg.Addr)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.TLS
	return &Client{base: u, token: cfg.Token, http: &http.Client{Timeout: cfg.Timeout, Transport: tr}}, nil
}

// Error is an error answer from the API.
type Error struct {
	Status   int
	Code     string
	Message  string
	Problems []card.Problem
}

// Error returns the message, or the card's problems joined on one line.
func (e *Error) Error() string {
	if len(e.Problems) > 0 {
		parts := make([]string, len(e.Problems))
		for i, p := range e.Problems {
			parts[i] = p.Field + ": " + p.Message
		}
		return "server card invalid: " + strings.Join(parts, "; ")
	}
	return e.Message
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string, out any) error {
	// path is already escaped (names hold '/', sent as %2F).
	target := c.base.Scheme + "://" + c.base.Host + strings.TrimSuffix(c.base.EscapedPath(), "/") + path
	if q := query.Encode(); q != "" {
		target += "?" + q
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach node at %s (is it running? check -addr): %w", c.base, unwrapURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var eb errorBody
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(raw, &eb) != nil || eb.Error.Message == "" {
			return &Error{Status: resp.StatusCode, Code: "http", Message: fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(raw)))}
		}
		return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, Problems: eb.Error.Problems}
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

func readQuery(consistent bool) url.Values {
	q := url.Values{}
	if consistent {
		q.Set("consistent", "true")
	}
	return q
}

func serverPath(name string) string { return "/v1/registry/servers/" + url.PathEscape(name) }

// Submit submits a server card.
func (c *Client) Submit(ctx context.Context, cardJSON []byte) (SubmitResponse, error) {
	var out SubmitResponse
	err := c.do(ctx, http.MethodPost, "/v1/registry/servers", nil, bytes.NewReader(cardJSON), "application/json", &out)
	return out, err
}

// ListServers lists every server version, optionally only those in one state.
func (c *Client) ListServers(ctx context.Context, st card.State, consistent bool) ([]ServerSummary, error) {
	q := readQuery(consistent)
	if st != "" {
		q.Set("state", string(st))
	}
	var out struct {
		Servers []ServerSummary `json:"servers"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/registry/servers", q, nil, "", &out)
	return out.Servers, err
}

// ServerVersions returns every version of a server.
func (c *Client) ServerVersions(ctx context.Context, name string, consistent bool) ([]state.ServerVersion, error) {
	var out struct {
		Versions []state.ServerVersion `json:"versions"`
	}
	err := c.do(ctx, http.MethodGet, serverPath(name), readQuery(consistent), nil, "", &out)
	return out.Versions, err
}

// Version returns one server version with its tools.
func (c *Client) Version(ctx context.Context, name, version string, consistent bool) (VersionDetail, error) {
	var out VersionDetail
	err := c.do(ctx, http.MethodGet, serverPath(name)+"/versions/"+url.PathEscape(version), readQuery(consistent), nil, "", &out)
	return out, err
}

// Transition runs a lifecycle action (approve, reject, deprecate, retire, quarantine).
func (c *Client) Transition(ctx context.Context, name, version, action string, req TransitionRequest) (state.ServerVersion, error) {
	var out state.ServerVersion
	err := c.do(ctx, http.MethodPost, serverPath(name)+"/versions/"+url.PathEscape(version)+"/"+action, nil, jsonBody(req), "application/json", &out)
	return out, err
}

// PutTenant creates or updates a tenant.
func (c *Client) PutTenant(ctx context.Context, req TenantRequest) (state.Tenant, error) {
	var out state.Tenant
	err := c.do(ctx, http.MethodPost, "/v1/tenants", nil, jsonBody(req), "application/json", &out)
	return out, err
}

// Tenants lists tenants.
func (c *Client) Tenants(ctx context.Context, consistent bool) ([]state.Tenant, error) {
	var out struct {
		Tenants []state.Tenant `json:"tenants"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/tenants", readQuery(consistent), nil, "", &out)
	return out.Tenants, err
}

// MembersResponse lists the cluster's members.
type MembersResponse struct {
	Leader  string           `json:"leader"`
	Members []cluster.Member `json:"members"`
}

// Members lists the Raft servers with their roles and last contact.
func (c *Client) Members(ctx context.Context) (MembersResponse, error) {
	var out MembersResponse
	err := c.do(ctx, http.MethodGet, "/v1/operator/members", nil, nil, "", &out)
	return out, err
}

// AddMember adds a voter.
func (c *Client) AddMember(ctx context.Context, id, addr string) (MembersResponse, error) {
	var out MembersResponse
	err := c.do(ctx, http.MethodPost, "/v1/operator/members", nil, jsonBody(MemberRequest{ID: id, Address: addr}), "application/json", &out)
	return out, err
}

// RemoveMember removes a server from the cluster.
func (c *Client) RemoveMember(ctx context.Context, id string) (MembersResponse, error) {
	var out MembersResponse
	err := c.do(ctx, http.MethodDelete, "/v1/operator/members/"+url.PathEscape(id), nil, nil, "", &out)
	return out, err
}

// SaveSnapshot writes a consistent snapshot of the namespace to w.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) error {
	return c.do(ctx, http.MethodGet, "/v1/operator/snapshot", nil, nil, "", w)
}

// RestoreSnapshot replaces the namespace state with a snapshot.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	return c.do(ctx, http.MethodPut, "/v1/operator/snapshot", nil, r, "application/octet-stream", nil)
}
