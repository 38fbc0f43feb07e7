// Package validate checks tool-call arguments against the tool version's
// JSON Schema, on the gateway's tools/call path, and checks at submission
// that a tool's schemas are valid JSON Schema at all.
//
// It owns compiling schemas ([Compile], [CheckSchema]), caching compiled
// schemas by hash ([Cache], [Hash]), decoding and validating arguments
// ([Schema.Validate]) and the shape of a refusal ([Error], [Violation],
// [SchemaError]). It does not own which schema a call is checked against
// (the gateway resolves the tool version), how a refusal is answered on the
// wire (the gateway maps an *Error to an MCP error), or the card rules such
// as "the root is an object schema" (package registry/card). It does no I/O:
// schemas are compiled without network or file access, and a "$ref" outside
// the schema is refused ([ErrRemoteRef]).
//
// Drafts: JSON Schema 2020-12, which MCP prescribes, when "$schema" is
// absent; draft-07 when "$schema" names it; any other "$schema" is refused.
// The engine is github.com/santhosh-tekuri/jsonschema/v6, which passes the
// whole official test suite of both drafts.
//
// Choices made here beyond the brief, recorded for operators:
//
//   - Arguments must be I-JSON (RFC 7493): duplicate keys, invalid UTF-8,
//     lone surrogates and numbers beyond a double are refused (rule
//     "json"), because an upstream that reads {"amount_cents":5,
//     "amount_cents":-5} differently from the gateway would act on
//     arguments nobody validated. Nesting is limited to [MaxDepth].
//   - The cache key is [Hash], the registry's "sha256:" hash of the
//     schema's RFC 8785 canonical form, so equal schemas of different
//     tools or versions share one compiled schema; the gateway computes it
//     once per tool version. The cache is bounded ([DefaultCacheSize]
//     entries, CLOCK eviction) rather than cleared per registry version,
//     so a registry change does not recompile every unchanged schema.
//   - An *Error lists at most [MaxViolations] violations, sorted by path.
//     anyOf and oneOf failures are one violation each, naming why each
//     alternative failed, rather than one per leaf of every alternative.
//   - Messages never quote argument values, only schema values and
//     argument keys, so refusals are safe to log and audit.
//   - "format" follows each draft: asserted in draft-07, annotation only
//     in 2020-12. "pattern" uses RE2 (linear time); ECMA-262 lookaround in
//     an upstream schema makes the schema invalid at submission.
package validate
