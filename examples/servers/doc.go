// Package servers holds the example upstream MCP servers that mcpmesh's
// gateway proxies to in `mcpmesh dev`, the README tour and the end-to-end
// tests: the HR directory (corp.hr/directory 1.0.0) and the finance ledger
// (corp.finance/ledger 1.0.0 and 2.0.0), built on the official go-sdk and
// served over Streamable HTTP in either protocol era (Handler).
//
// # Tool definitions come from the cards
//
// Each server advertises exactly the tool definitions of its server card in
// examples/catalog (name, title, description, inputSchema, outputSchema,
// annotations): the gateway pins definitions by hash at approval and
// quarantines a tool whose live definition differs. The servers therefore
// build their tool list from the embedded card JSON, with the schemas passed
// to the go-sdk as json.RawMessage, and a constructor fails when the
// definition the go-sdk would put on the wire does not hash (RFC 8785) to the
// card's. One known way to break that is MCPGODEBUG=hintomitempty=1, which
// makes the go-sdk drop false annotation hints.
//
// # Behaviour
//
//   - Arguments are validated against the card's inputSchema (JSON Schema
//     2020-12, formats asserted) before a handler runs; invalid arguments are
//     a JSON-RPC error -32602, as are unknown tools. Business failures
//     (unknown account, unknown grade, overdraft) are tool results with
//     isError true.
//   - search_employees answers text content plus structuredContent;
//     get_salary_band and get_balance answer structuredContent matching the
//     card's outputSchema (get_balance's shape differs between ledger 1.0.0
//     and 2.0.0), plus the same JSON as text.
//   - transfer_funds is destructive: it books the transfer in memory, so later
//     balances change. A repeated idempotency_key with the same arguments
//     returns the first booking; with other arguments it is an isError
//     result.
//   - generate_report (ledger 2.0.0) works through the accounts one step at a
//     time, reports progress 0..N when the request carries a progress token,
//     and stops when the call is cancelled (notifications/cancelled on a
//     session, or the HTTP request ending in the stateless era).
//   - Successful ledger results carry their actual cost, in USD (the card's
//     currency), in result _meta under CostMetaKey, for chargeback.
//
// # Tenants
//
// Every record has a tenant: payroll and benefits in the directory, treasury
// and procurement in the ledger. A tool call must carry a token minted for
// this server by the mcpmesh node it trusts (package trust/tokens): the
// Authorization bearer token of the HTTP request that carried the call, or
// on stdio _meta["io.mcpmesh/token"]. The server checks it against the
// node's key set (WithVerifier: issuer, audience = the server's name,
// expiry, ES256 signature by a published key) and returns only the records
// of the token's tenant (tenant.go). A call without a valid token, or whose
// token has no tenant (an anonymous agent, the node itself), gets an
// isError result saying why and sees no record. Listing tools and setting
// up a session need no token: they reveal nothing beyond the card.
//
// Data lives in memory and is deterministic: every server value starts from
// the same records, and a ledger's transfers last as long as the value.
//
// It owns the example servers and Recorder, a test aid that records the
// JSON-RPC requests an upstream received. It does not own the cards (package
// examples), the gateway, nor token minting or verification (it uses
// trust/tokens' Verifier, as a server in Go would; any JOSE library does).
package servers
