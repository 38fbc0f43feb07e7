package card

import (
	"cmp"
	"encoding/json"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Data classifications accepted in Governance.DataClassification, least
// sensitive first.
var dataClassifications = []string{"public", "internal", "confidential", "restricted"}

// Risk tiers accepted in Governance.RiskTier, lowest first.
var riskTiers = []string{"low", "medium", "high", "critical"}

// Upstream transports accepted in Upstream.Transport.
const (
	TransportStreamableHTTP = "streamable-http"
	TransportSSE            = "sse"
	TransportStdio          = "stdio"
)

// DefaultCurrency is the Governance.Currency used when a card leaves it out.
const DefaultCurrency = "USD"

// Governance is the "io.mcpmesh/governance" section of a card: who answers for
// the server, how sensitive it is, what a call costs and how the node reaches
// it.
type Governance struct {
	// Owner is the person or group accountable for the server. Required.
	Owner string `json:"owner"`
	// Team is the team that runs the server. Required.
	Team string `json:"team"`
	// DataClassification is the most sensitive data the server handles: one
	// of public, internal, confidential, restricted. Required.
	DataClassification string `json:"dataClassification"`
	// RiskTier is the reviewer-facing risk of calling the server: one of low,
	// medium, high, critical. Required.
	RiskTier string `json:"riskTier"`
	// CostPerCall is what one tool call costs, in Currency units; zero when
	// calls are free. It must not be negative.
	CostPerCall float64 `json:"costPerCall"`
	// Currency is the ISO 4217 code of CostPerCall. Card.Governance fills in
	// DefaultCurrency ("USD") when it is empty.
	Currency string `json:"currency,omitempty"`
	// Upstream says how the node reaches the MCP server. Required.
	Upstream Upstream `json:"upstream"`
}

// Upstream is how a node reaches the MCP server a card describes.
type Upstream struct {
	// Transport is "streamable-http", "sse" or "stdio".
	Transport string `json:"transport"`
	// URL is the server's endpoint, required for streamable-http and sse: an
	// absolute http or https URL without user information. Credentials are
	// never part of a card; the node mints its own token for the upstream.
	URL string `json:"url,omitempty"`
	// Command is the program to spawn, required for stdio.
	Command string `json:"command,omitempty"`
	// Args are the program's arguments (stdio only).
	Args []string `json:"args,omitempty"`
	// Env holds extra environment variables for the program (stdio only).
	// Values are replicated and readable by registry readers, so they must
	// not be secrets.
	Env map[string]string `json:"env,omitempty"`
}

const governancePath = "_meta." + GovernanceKey

// Keys of the governance and upstream objects, in the order problems are
// reported.
var (
	governanceKeys = []string{"owner", "team", "dataClassification", "riskTier", "costPerCall", "currency", "upstream"}
	upstreamKeys   = []string{"transport", "url", "command", "args", "env"}
)

// Governance decodes and validates the card's governance section. Currency
// defaults to DefaultCurrency. The error is a *ValidationError listing every
// problem in the section, including its absence.
func (c *Card) Governance() (Governance, error) {
	var raw json.RawMessage
	if c != nil {
		raw = c.Meta[GovernanceKey]
	}
	g, ps := decodeGovernance(raw)
	if err := ps.err(); err != nil {
		return Governance{}, err
	}
	return g, nil
}

// decodeGovernance decodes and validates a governance section.
func decodeGovernance(raw json.RawMessage) (Governance, problems) {
	var g Governance
	var ps problems
	if isNull(raw) {
		ps.add(governancePath, `is required: add an object with owner, team, dataClassification, riskTier and upstream, such as {"owner":"jane@corp.example","team":"finance-platform","dataClassification":"internal","riskTier":"low","upstream":{"transport":"streamable-http","url":"http://127.0.0.1:9301/mcp"}}`)
		return g, ps
	}
	var upstream json.RawMessage
	ps = decodeObject(raw, governancePath, []objectField{
		{"owner", &g.Owner, "a string"},
		{"team", &g.Team, "a string"},
		{"dataClassification", &g.DataClassification, "a string"},
		{"riskTier", &g.RiskTier, "a string"},
		{"costPerCall", &g.CostPerCall, "a number"},
		{"currency", &g.Currency, "a string"},
		{"upstream", &upstream, "an object"},
	}, true)
	if len(ps) > 0 && ps[0].Field == governancePath {
		return g, ps // not an object
	}
	upPath := governancePath + ".upstream"
	if isNull(upstream) {
		ps.add(upPath, `is required: say how the node reaches the server, such as {"transport":"streamable-http","url":"http://127.0.0.1:9301/mcp"} or {"transport":"stdio","command":"/usr/local/bin/ledger-mcp"}`)
	} else {
		ps = append(ps, decodeObject(upstream, upPath, []objectField{
			{"transport", &g.Upstream.Transport, "a string"},
			{"url", &g.Upstream.URL, "a string"},
			{"command", &g.Upstream.Command, "a string"},
			{"args", &g.Upstream.Args, "an array of strings"},
			{"env", &g.Upstream.Env, "an object of string values"},
		}, true)...)
	}
	if g.Currency == "" {
		g.Currency = DefaultCurrency
	}
	// A value that failed to decode is reported once, not again as empty.
	ps = ps.appendNew(g.problems(governancePath, !isNull(upstream)))
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(
			cmp.Compare(rankPath(a.Field, governancePath, governanceKeys), rankPath(b.Field, governancePath, governanceKeys)),
			cmp.Compare(rankPath(a.Field, upPath, upstreamKeys), rankPath(b.Field, upPath, upstreamKeys)))
	})
	return g, ps
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// problems reports what is wrong with g's values, under path. Upstream rules
// are checked only when checkUpstream is set, so that a missing upstream is
// reported once.
func (g Governance) problems(path string, checkUpstream bool) problems {
	var ps problems
	if strings.TrimSpace(g.Owner) == "" {
		ps.add(join(path, "owner"), "is required: name the person or group accountable for this server, such as an email address or group name")
	}
	if strings.TrimSpace(g.Team) == "" {
		ps.add(join(path, "team"), "is required: name the team that runs this server")
	}
	if !slices.Contains(dataClassifications, g.DataClassification) {
		ps.add(join(path, "dataClassification"), "must be one of %s; got %q", strings.Join(dataClassifications, ", "), g.DataClassification)
	}
	if !slices.Contains(riskTiers, g.RiskTier) {
		ps.add(join(path, "riskTier"), "must be one of %s; got %q", strings.Join(riskTiers, ", "), g.RiskTier)
	}
	if !(g.CostPerCall >= 0) || math.IsInf(g.CostPerCall, 0) {
		ps.add(join(path, "costPerCall"), "must be a finite number >= 0 (the cost of one call in %s units); got %v", g.currencyOrDefault(), g.CostPerCall)
	}
	if g.Currency != "" && !currencyCode.MatchString(g.Currency) {
		ps.add(join(path, "currency"), "must be an ISO 4217 code of three capital letters such as USD or EUR (leave it out for USD); got %q", g.Currency)
	}
	if checkUpstream {
		ps = append(ps, g.Upstream.problems(join(path, "upstream"))...)
	}
	return ps
}

func (g Governance) currencyOrDefault() string {
	if g.Currency == "" {
		return DefaultCurrency
	}
	return g.Currency
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// problems reports what is wrong with u, under path.
func (u Upstream) problems(path string) problems {
	var ps problems
	switch u.Transport {
	case TransportStreamableHTTP, TransportSSE:
		ps = append(ps, checkUpstreamURL(join(path, "url"), u.URL)...)
		if u.Command != "" {
			ps.add(join(path, "command"), "applies to stdio only: remove it, or set transport to %q", TransportStdio)
		}
		if len(u.Args) > 0 {
			ps.add(join(path, "args"), "apply to stdio only: remove them, or set transport to %q", TransportStdio)
		}
		if len(u.Env) > 0 {
			ps.add(join(path, "env"), "applies to stdio only: remove it, or set transport to %q", TransportStdio)
		}
	case TransportStdio:
		if strings.TrimSpace(u.Command) == "" {
			ps.add(join(path, "command"), "is required for stdio: give the program to spawn, such as /usr/local/bin/ledger-mcp")
		}
		if u.URL != "" {
			ps.add(join(path, "url"), "applies to streamable-http and sse only: remove it, or change the transport")
		}
		names := make([]string, 0, len(u.Env))
		for k := range u.Env {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			field := join(path, "env") + "." + k
			switch {
			case !envName.MatchString(k):
				ps.add(field, "is not a valid environment variable name: use letters, digits and _, not starting with a digit")
			case looksSecret(k):
				ps.add(field, "looks like a secret, and a server card is replicated and readable by every registry reader: remove it and give the secret to the upstream through its own secret store")
			}
		}
	default:
		ps.add(join(path, "transport"), "must be one of %s, %s, %s; got %q", TransportStreamableHTTP, TransportSSE, TransportStdio, u.Transport)
	}
	return ps
}

func checkUpstreamURL(field, raw string) problems {
	var ps problems
	const example = "such as http://127.0.0.1:9301/mcp"
	if raw == "" {
		ps.add(field, "is required for streamable-http and sse: give the server's absolute http(s) endpoint, %s", example)
		return ps
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		ps.add(field, "is not a valid URL (%v): give an absolute http(s) URL, %s", err, example)
	case u.Scheme != "http" && u.Scheme != "https":
		ps.add(field, "must be an absolute http or https URL, %s; got %q", example, raw)
	case u.Host == "" || u.Hostname() == "":
		ps.add(field, "has no host: give an absolute http(s) URL, %s", example)
	case u.User != nil:
		ps.add(field, "must not contain user information (user:password@): the node authenticates to upstreams with its own token; remove it")
	case u.Fragment != "" || strings.HasSuffix(raw, "#"):
		ps.add(field, "must not contain a fragment (#…): remove it")
	}
	return ps
}

// secretWords are environment-name words that mark a secret value.
var secretWords = []string{"SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE", "TOKEN", "APIKEY", "CREDENTIAL", "CREDENTIALS"}

// looksSecret reports whether an environment variable name says its value is
// a secret, word by word, so that GITHUB_TOKEN and DB_PASSWORD match but
// MAX_TOKENS does not.
func looksSecret(name string) bool {
	words := strings.Split(strings.ToUpper(name), "_")
	for i, w := range words {
		if slices.Contains(secretWords, w) {
			return true
		}
		if w == "KEY" && i > 0 && slices.Contains([]string{"API", "PRIVATE", "ACCESS", "SECRET", "SIGNING"}, words[i-1]) {
			return true
		}
	}
	return false
}
