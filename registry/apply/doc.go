// Package apply applies a declarative catalog — a directory of server cards
// and an optional tenants.yaml, kept in git — to a BU's registry through the
// admin API, idempotently. It backs `mcpmesh apply -f DIR [-dry-run]`.
//
// The work has three steps, each usable alone:
//
//   - [Load] reads the directory without touching the network: every *.json
//     file that is a server card (recursively; hidden directories such as
//     .git are skipped), parsed and validated with [card.Parse], and
//     DIR/tenants.yaml, a list of {name, displayName, owners}. A *.json file
//     counts as a server card when its "$schema" names server.schema.json or
//     its "_meta" holds an io.mcpmesh/ section; any other JSON file is
//     skipped and listed as skipped, and a file that is not JSON at all is a
//     problem. Every problem of every file is reported at once
//     (*[InvalidError]), with the file name.
//   - [NewPlan] compares the catalog with the registry (consistent reads
//     only) and classifies each object: a card whose NAME@VERSION is not
//     registered is "create"; one whose canonical hash ([card.CanonicalHash],
//     the registry's cardHash) matches is "unchanged"; a different card under
//     a registered version is "conflict", since versions are immutable. A
//     tenant is "create", "update" (naming the fields that differ) or
//     "unchanged". NewPlan only reads.
//   - DIR/limits.yaml, when present, is the BU's rate limit set ([ParseLimits]:
//     a list of {identity | tenant | tool | tenant+tool, rate, burst}, every
//     problem with its line); it replaces the registry's set whole, and the
//     plan names each limit added, changed or removed by scope. Without the
//     file the registry's limits are left alone; an empty file removes them.
//   - [Apply] executes a plan: it submits the new cards and puts the new and
//     changed tenants.
//
// DIR/quotas.yaml ([QuotasFile]), when present, declares each tenant's
// monthly call quota and cost budget and replaces the registry's quota set
// whole (a "quotas" change naming each tenant added, changed or removed);
// when absent, the registry's quotas are left alone.
//
// DIR/exports.yaml ([ExportsFile], [ParseExports]), when present, declares
// what the namespace shares with other BUs (server, tools by name,
// optional version patterns, consumer trust domains with optional
// principal prefixes and scopes) and replaces the registry's export set
// whole (an "exports" change naming each server added, changed or
// removed); when absent, the exports are left alone, and an empty file
// stops all sharing.
//
// Choices, recorded for operators:
//
//   - All or nothing before the first write. An invalid card aborts Load,
//     and a conflict makes Apply refuse the whole plan ([ErrConflicts])
//     before it writes anything, so a catalog is either applied whole or not
//     at all (short of a failure in the middle of Apply, such as a lost
//     leader; applying again then finishes the job, since every step is
//     idempotent). A conflict is a version that was changed in git after it
//     was submitted: bump the version.
//   - Apply only submits. Lifecycle is a reviewer's act, not something a
//     catalog declares: new versions land in state "submitted" and wait for
//     `mcpmesh registry approve`. Apply never approves, deprecates, retires
//     or deletes anything: objects the directory does not mention are left
//     alone.
//   - A tenant's owners are compared in order, as the registry stores them;
//     reordering the owners in tenants.yaml is an update.
//   - Each NAME@VERSION and each tenant name may be declared once; a second
//     declaration is a problem even when identical.
//
// The package owns the catalog format and the plan. It does not own the
// HTTP API (package registry/api), card rules (registry/card) or output
// formatting (cmd/mcpmesh). Plans and catalogs are plain values; Apply is
// safe for concurrent use only on distinct plans.
package apply
