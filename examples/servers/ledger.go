package servers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// CostMetaKey is the result "_meta" key under which the ledger reports what
// a successful call actually cost, in USD (its card's currency), as a JSON
// number such as 0.0015. Results with isError true carry no cost.
const CostMetaKey = "io.mcpmesh/cost"

// ledgerCosts is the actual cost of one successful call per tool, in USD.
var ledgerCosts = map[string]float64{
	"get_balance":     0.0015,
	"transfer_funds":  0.004,
	"generate_report": 0.02,
}

// account is one ledger account. Its balance is OpeningCents on
// ledgerOpened plus the transfers booked since.
type account struct {
	ID           string
	Name         string
	Currency     string
	Tenant       string
	OpeningCents int64
}

// ledgerOpened is the booking date of every account's opening balance; the
// ledger knows nothing earlier.
const ledgerOpened = "2026-01-01"

// accounts are the ledger's accounts, in a fixed order (reports keep it).
var accounts = []account{
	{"ACC-1001", "Operating cash", "USD", "treasury", 125_000_000},
	{"ACC-1002", "Euro settlement", "EUR", "treasury", 48_000_000},
	{"ACC-1003", "Payroll funding", "USD", "treasury", 30_000_000},
	{"ACC-2001", "Supplier payments", "USD", "procurement", 7_500_000},
	{"ACC-2002", "Capex reserve", "USD", "procurement", 20_000_000},
	{"ACC-2003", "UK suppliers", "GBP", "procurement", 5_000_000},
}

// monthlyPL is a tenant's profit and loss in January 2026, in USD cents;
// later months grow by one percent a month.
var monthlyPL = []struct {
	Tenant                  string
	RevenueCents, CostCents int64
}{
	{"treasury", 420_000_000, 310_000_000},
	{"procurement", 150_000_000, 185_000_000},
	// hr's payroll department, as finance names a tenant of hr calling
	// across BUs: finance books its cost centre, so hr's payroll agent
	// sees its own lines.
	{"hr.example.corp/payroll", 0, 96_000_000},
}

// defaultStepDelay is how long generate_report spends on each account, so a
// person watching sees progress arrive.
const defaultStepDelay = 200 * time.Millisecond

// ledgerOptions are the ledger's collaborators; tests replace them.
type ledgerOptions struct {
	// now is the clock: today's date and booking times.
	now func() time.Time
	// stepDelay is generate_report's time per account.
	stepDelay time.Duration
	// after is the timer of report steps, as time.After.
	after func(time.Duration) <-chan time.Time
	// reportCanceled, if set, is called when generate_report stops because
	// its call was cancelled.
	reportCanceled func()
	// settings are the server's Options.
	settings settings
}

// transfer is one booked transfer.
type transfer struct {
	ID          string
	From, To    string
	AmountCents int64
	Currency    string
	Reference   string
	Key         string
	BookedAt    time.Time
}

// ledger is the state of one ledger server: its booked transfers.
type ledger struct {
	version string
	opts    ledgerOptions

	mu        sync.Mutex
	transfers []transfer
	byKey     map[string]int // idempotency key → index in transfers
}

// NewLedger returns the finance ledger MCP server (corp.finance/ledger) at
// version "1.0.0" (get_balance, transfer_funds) or "2.0.0" (get_balance with
// a nested balance object, transfer_funds, generate_report). Each call
// returns a ledger with the same opening balances and no transfers; the
// server is safe for concurrent use. The error wraps ErrUnknownServer for any
// other version.
func NewLedger(version string, opts ...Option) (*mcp.Server, error) {
	s, _, err := newLedger(version, ledgerOptions{now: time.Now, stepDelay: defaultStepDelay, after: time.After, settings: newSettings(opts)})
	return s, err
}

// newLedger is NewLedger with its collaborators, returning the state too.
func newLedger(version string, opts ledgerOptions) (*mcp.Server, *ledger, error) {
	l := &ledger{version: version, opts: opts, byKey: map[string]int{}}
	handlers := map[string]toolFunc{
		"get_balance":    l.getBalance,
		"transfer_funds": l.transferFunds,
	}
	switch version {
	case "1.0.0":
	case "2.0.0":
		handlers["generate_report"] = l.generateReport
	default:
		return nil, nil, fmt.Errorf("%w %s@%s; the ledger has versions 1.0.0 and 2.0.0", ErrUnknownServer, LedgerName, version)
	}
	s, err := newCardServer(LedgerName, version, handlers, opts.settings)
	if err != nil {
		return nil, nil, err
	}
	return s, l, nil
}

// today is the current booking date, YYYY-MM-DD in UTC.
func (l *ledger) today() string {
	return l.opts.now().UTC().Format(time.DateOnly)
}

// account returns the account with id if the caller may see it.
func (l *ledger) account(ctx context.Context, id string) (account, bool) {
	for _, a := range accounts {
		if a.ID == id && tenantVisible(ctx, a.Tenant) {
			return a, true
		}
	}
	return account{}, false
}

// balanceLocked is a's balance at the end of the day asOf (YYYY-MM-DD).
// l.mu must be held.
func (l *ledger) balanceLocked(a account, asOf string) int64 {
	b := a.OpeningCents
	for _, t := range l.transfers {
		if t.BookedAt.UTC().Format(time.DateOnly) > asOf {
			continue
		}
		if t.From == a.ID {
			b -= t.AmountCents
		}
		if t.To == a.ID {
			b += t.AmountCents
		}
	}
	return b
}

// withCost adds the tool's cost to a successful result.
func withCost(res *mcp.CallToolResult, tool string) *mcp.CallToolResult {
	if res.Meta == nil {
		res.Meta = mcp.Meta{}
	}
	res.Meta[CostMetaKey] = ledgerCosts[tool]
	return res
}

// balanceV1 is get_balance's structuredContent in ledger 1.0.0.
type balanceV1 struct {
	AccountID    string `json:"account_id"`
	BalanceCents int64  `json:"balance_cents"`
	Currency     string `json:"currency"`
	AsOf         string `json:"as_of"`
}

// balanceV2 is get_balance's structuredContent in ledger 2.0.0.
type balanceV2 struct {
	AccountID string `json:"account_id"`
	Balance   struct {
		AmountCents int64  `json:"amount_cents"`
		Currency    string `json:"currency"`
	} `json:"balance"`
	AsOf string `json:"as_of"`
}

// getBalance answers an account's balance at the end of as_of (default
// today), in the version's output shape.
func (l *ledger) getBalance(ctx context.Context, req *mcp.CallToolRequest, raw json.RawMessage) (*mcp.CallToolResult, error) {
	args := struct {
		AccountID string `json:"account_id"`
		AsOf      string `json:"as_of"`
	}{}
	if err := decodeArgs("get_balance", raw, &args); err != nil {
		return nil, err
	}
	a, ok := l.account(ctx, args.AccountID)
	if !ok {
		return toolError("Unknown account %s: no such account in your tenant.", args.AccountID), nil
	}
	today := l.today()
	if args.AsOf == "" {
		args.AsOf = today
	}
	switch {
	case args.AsOf < ledgerOpened:
		return toolError("No balance of %s as of %s: the ledger starts on %s.", a.ID, args.AsOf, ledgerOpened), nil
	case args.AsOf > today:
		return toolError("No balance of %s as of %s: that date is in the future (today is %s).", a.ID, args.AsOf, today), nil
	}
	l.mu.Lock()
	cents := l.balanceLocked(a, args.AsOf)
	l.mu.Unlock()

	var out any
	if l.version == "1.0.0" {
		out = balanceV1{AccountID: a.ID, BalanceCents: cents, Currency: a.Currency, AsOf: args.AsOf}
	} else {
		v2 := balanceV2{AccountID: a.ID, AsOf: args.AsOf}
		v2.Balance.AmountCents, v2.Balance.Currency = cents, a.Currency
		out = v2
	}
	res, err := structured(out, "")
	if err != nil {
		return nil, err
	}
	return withCost(res, "get_balance"), nil
}

// transferArgs are transfer_funds' arguments.
type transferArgs struct {
	FromAccount    string `json:"from_account"`
	ToAccount      string `json:"to_account"`
	AmountCents    int64  `json:"amount_cents"`
	Currency       string `json:"currency"`
	Reference      string `json:"reference"`
	IdempotencyKey string `json:"idempotency_key"`
}

// transferResult is transfer_funds' structuredContent.
type transferResult struct {
	TransferID string `json:"transfer_id"`
	Status     string `json:"status"`
	BookedAt   string `json:"booked_at,omitempty"`
}

// result is the structured answer for a booked transfer.
func (t transfer) result() transferResult {
	return transferResult{TransferID: t.ID, Status: "booked", BookedAt: t.BookedAt.UTC().Format(time.RFC3339)}
}

// sameAs reports whether args ask for the transfer t booked.
func (t transfer) sameAs(args transferArgs) bool {
	return t.From == args.FromAccount && t.To == args.ToAccount && t.AmountCents == args.AmountCents &&
		t.Currency == args.Currency && t.Reference == args.Reference
}

// transferFunds books a transfer between two accounts of the same currency,
// refusing overdrafts; a repeated idempotency key returns the first booking.
func (l *ledger) transferFunds(ctx context.Context, req *mcp.CallToolRequest, raw json.RawMessage) (*mcp.CallToolResult, error) {
	var args transferArgs
	if err := decodeArgs("transfer_funds", raw, &args); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()

	if args.IdempotencyKey != "" {
		if i, ok := l.byKey[args.IdempotencyKey]; ok {
			first := l.transfers[i]
			if !first.sameAs(args) {
				return toolError("idempotency_key %q was already used for transfer %s with other arguments; "+
					"use a new key for a new transfer.", args.IdempotencyKey, first.ID), nil
			}
			res, err := structured(first.result(), "")
			if err != nil {
				return nil, err
			}
			return withCost(res, "transfer_funds"), nil
		}
	}
	if args.FromAccount == args.ToAccount {
		return toolError("Cannot transfer from %s to itself: choose two different accounts.", args.FromAccount), nil
	}
	from, ok := l.account(ctx, args.FromAccount)
	if !ok {
		return toolError("Unknown account %s (from_account): no such account in your tenant.", args.FromAccount), nil
	}
	to, ok := l.account(ctx, args.ToAccount)
	if !ok {
		return toolError("Unknown account %s (to_account): no such account in your tenant.", args.ToAccount), nil
	}
	for _, a := range []account{from, to} {
		if a.Currency != args.Currency {
			return toolError("Currency %s does not match account %s, which is in %s.", args.Currency, a.ID, a.Currency), nil
		}
	}
	now := l.opts.now().UTC()
	if have := l.balanceLocked(from, now.Format(time.DateOnly)); have < args.AmountCents {
		return toolError("Insufficient funds: %s holds %d cents %s, the transfer needs %d.",
			from.ID, have, from.Currency, args.AmountCents), nil
	}
	t := transfer{
		ID:          fmt.Sprintf("TRF-%06d", len(l.transfers)+1),
		From:        from.ID,
		To:          to.ID,
		AmountCents: args.AmountCents,
		Currency:    args.Currency,
		Reference:   args.Reference,
		Key:         args.IdempotencyKey,
		BookedAt:    now,
	}
	l.transfers = append(l.transfers, t)
	if t.Key != "" {
		l.byKey[t.Key] = len(l.transfers) - 1
	}
	res, err := structured(t.result(), "")
	if err != nil {
		return nil, err
	}
	return withCost(res, "transfer_funds"), nil
}

// reportLine is one line of a period report.
type reportLine struct {
	Tenant      string `json:"tenant"`
	Label       string `json:"label"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
}

// report is generate_report's structuredContent (the card declares no
// outputSchema).
type report struct {
	Kind   string       `json:"kind"`
	Period string       `json:"period"`
	AsOf   string       `json:"as_of"`
	Lines  []reportLine `json:"lines"`
}

// generateReport builds a period report one account at a time. With a
// progress token it notifies progress 0 before the first account and i after
// the i-th, out of N accounts; it stops as soon as its context is done.
func (l *ledger) generateReport(ctx context.Context, req *mcp.CallToolRequest, raw json.RawMessage) (*mcp.CallToolResult, error) {
	args := struct {
		Kind   string `json:"kind"`
		Period string `json:"period"`
	}{}
	if err := decodeArgs("generate_report", raw, &args); err != nil {
		return nil, err
	}
	start, err := time.Parse("2006-01", args.Period)
	if err != nil {
		return nil, invalidParams("period %q is not YYYY-MM: %v", args.Period, err)
	}
	today := l.today()
	switch {
	case args.Period < ledgerOpened[:7]:
		return toolError("No report for %s: the ledger starts on %s.", args.Period, ledgerOpened), nil
	case args.Period > today[:7]:
		return toolError("No report for %s: the period has not started (today is %s).", args.Period, today), nil
	}
	asOf := start.AddDate(0, 1, -1).Format(time.DateOnly) // last day of the period
	if asOf > today {
		asOf = today
	}

	var visible []account
	for _, a := range accounts {
		if tenantVisible(ctx, a.Tenant) {
			visible = append(visible, a)
		}
	}
	token := req.Params.GetProgressToken()
	progress := func(done int, msg string) {
		if token == nil {
			return
		}
		// Progress is best effort: a lost notification must not fail the
		// report, and a client that went away shows up as ctx being done.
		_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
			ProgressToken: token,
			Progress:      float64(done),
			Total:         float64(len(visible)),
			Message:       msg,
		})
	}

	rep := report{Kind: args.Kind, Period: args.Period, AsOf: asOf, Lines: []reportLine{}}
	progress(0, fmt.Sprintf("%s %s: %d accounts to close", args.Kind, args.Period, len(visible)))
	for i, a := range visible {
		if err := l.step(ctx); err != nil {
			return nil, err
		}
		if args.Kind == "balance_sheet" {
			l.mu.Lock()
			cents := l.balanceLocked(a, asOf)
			l.mu.Unlock()
			rep.Lines = append(rep.Lines, reportLine{a.Tenant, a.ID + " " + a.Name, cents, a.Currency})
		}
		progress(i+1, "closed "+a.ID)
	}
	if args.Kind == "profit_and_loss" {
		months := int64((start.Year()-2026)*12 + int(start.Month()) - 1)
		for _, pl := range monthlyPL {
			if !tenantVisible(ctx, pl.Tenant) {
				continue
			}
			rev := pl.RevenueCents * (100 + months) / 100
			cost := pl.CostCents * (100 + months) / 100
			rep.Lines = append(rep.Lines,
				reportLine{pl.Tenant, "revenue", rev, "USD"},
				reportLine{pl.Tenant, "costs", -cost, "USD"},
				reportLine{pl.Tenant, "net income", rev - cost, "USD"})
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%s for %s (as of %s):", strings.ReplaceAll(args.Kind, "_", " "), args.Period, asOf)
	for _, ln := range rep.Lines {
		fmt.Fprintf(&b, "\n%-12s %-28s %14.2f %s", ln.Tenant, ln.Label, float64(ln.AmountCents)/100, ln.Currency)
	}
	res, err := structured(rep, b.String())
	if err != nil {
		return nil, err
	}
	return withCost(res, "generate_report"), nil
}

// step spends one report step's time, or returns early with an error when
// ctx is done.
func (l *ledger) step(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-l.opts.after(l.opts.stepDelay):
		if ctx.Err() == nil {
			return nil
		}
	}
	if l.opts.reportCanceled != nil {
		l.opts.reportCanceled()
	}
	return fmt.Errorf("generate_report stopped: %w", ctx.Err())
}
