package policy

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// Action is what a request asks to do.
type Action string

// The actions of the schema.
const (
	// ActionList sees a catalog: tools/list, resources/list and prompts/list
	// of a namespace (the aggregated endpoint) or of one server.
	ActionList Action = "list"
	// ActionCall runs one tool version.
	ActionCall Action = "call"
	// ActionReadResource reads or subscribes to one resource.
	ActionReadResource Action = "readResource"
	// ActionGetPrompt gets one prompt or completes its arguments.
	ActionGetPrompt Action = "getPrompt"
)

// Actions are the valid actions, in the order the schema declares them.
var Actions = []Action{ActionList, ActionCall, ActionReadResource, ActionGetPrompt}

// Server is what a request knows of an MCP server, from its card.
type Server struct {
	// Name is the registry name, e.g. "corp.hr/directory". Empty when a
	// list request is for the whole namespace.
	Name               string
	RiskTier           string
	DataClassification string
	Owner, Team        string
}

// Tool is the tool version a call runs.
type Tool struct {
	Name, Version string
	Deprecated    bool
	// Annotations are the tool's hints; nil means the MCP defaults (not
	// read-only, destructive, not idempotent, open world).
	Annotations *mcp.ToolAnnotations
}

// Request is one question to the policy: may Principal do Action on the
// resource the other fields name?
type Request struct {
	Principal agentauth.Principal
	Action    Action
	// Namespace is the BU's namespace.
	Namespace string
	// Server is the server of the resource; for ActionList of the whole
	// namespace only Name is empty.
	Server Server
	// Tool is the tool version of ActionCall.
	Tool Tool
	// URI is the resource of ActionReadResource.
	URI string
	// Prompt is the prompt name of ActionGetPrompt.
	Prompt string
	// Arguments are the arguments of ActionCall (a JSON object), which
	// policies see as tags (approval.go); nil for none.
	Arguments json.RawMessage
	// Now is the time of the request; policies see it to the second.
	Now time.Time
	// Target, when set, is the prebuilt resource side of the request and
	// supersedes Namespace, Server, Tool, URI and Prompt. It must have
	// been built for the request's Action.
	Target *Target
}

// Entity type names of the schema.
const (
	typeAgent       = cedar.EntityType("Agent")
	typeTenant      = cedar.EntityType("Tenant")
	typeGroup       = cedar.EntityType("Group")
	typeNamespace   = cedar.EntityType("Namespace")
	typeServer      = cedar.EntityType("Server")
	typeTool        = cedar.EntityType("Tool")
	typeToolVersion = cedar.EntityType("ToolVersion")
	typeResource    = cedar.EntityType("Resource")
	typePrompt      = cedar.EntityType("Prompt")
	typeAction      = cedar.EntityType("Action")
)

// Ordinal ranks of risk tiers and data classifications, so policies can
// compare them (context.riskLevel >= 2); unknown values rank -1.
var (
	riskLevels           = []string{"low", "medium", "high", "critical"}
	classificationLevels = []string{"public", "internal", "confidential", "restricted"}
)

// ToolUID, ToolVersionUID, ServerUID and friends name the entities a
// request is about, as policies write them.
func ToolUID(server, tool string) cedar.EntityUID {
	return cedar.NewEntityUID(typeTool, cedar.String(server+"/"+tool))
}

// ToolVersionUID is "<server>/<tool>@<version>".
func ToolVersionUID(server, tool, version string) cedar.EntityUID {
	return cedar.NewEntityUID(typeToolVersion, cedar.String(server+"/"+tool+"@"+version))
}

// entities is the handful of entities of one request: a slice scan beats
// a map at this size.
type entities []cedar.Entity

func (es entities) Get(uid cedar.EntityUID) (cedar.Entity, bool) {
	for _, e := range es {
		if e.UID == uid {
			return e, true
		}
	}
	return cedar.Entity{}, false
}

// Target is the resource side of requests about one thing (the namespace,
// a server, or a tool version) built once: its Cedar entities and the
// context entries they give. Build it with NewTarget when the catalog
// changes and put it in every Request about that thing, which then skips
// rebuilding them; most of a decision's cost is building entities.
type Target struct {
	action   Action
	resource cedar.EntityUID
	entities entities
	context  cedar.RecordMap
	// last is the context record of the latest request: requests in the
	// same second from the same trust domain share it, since building a
	// Cedar record (it hashes every value) costs as much as the rest of
	// the request.
	last atomic.Pointer[contextAt]
}

type contextAt struct {
	second      int64
	trustDomain string
	record      cedar.Record
}

// contextFor returns the context record of a request at now from trustDomain.
func (t *Target) contextFor(now time.Time, trustDomain string) cedar.Record {
	now = now.Truncate(time.Second)
	if c := t.last.Load(); c != nil && c.second == now.Unix() && c.trustDomain == trustDomain {
		return c.record
	}
	ctx := make(cedar.RecordMap, len(t.context)+2)
	maps.Copy(ctx, t.context)
	ctx["now"] = cedar.NewDatetime(now)
	ctx["trustDomain"] = cedar.String(trustDomain)
	c := &contextAt{second: now.Unix(), trustDomain: trustDomain, record: cedar.NewRecord(ctx)}
	t.last.Store(c)
	return c.record
}

// NewTarget builds the target of r from its Action, Namespace, Server,
// Tool, URI and Prompt. The Principal, Now and any Target of r are ignored.
func NewTarget(r *Request) *Target {
	ns := cedar.Entity{UID: cedar.NewEntityUID(typeNamespace, cedar.String(r.Namespace))}
	t := &Target{action: r.Action, entities: entities{ns}, context: cedar.RecordMap{}}
	if r.Action == ActionList && r.Server.Name == "" {
		t.resource = ns.UID
		return t
	}
	sv := r.Server
	server := cedar.Entity{
		UID:     cedar.NewEntityUID(typeServer, cedar.String(sv.Name)),
		Parents: cedar.NewEntityUIDSet(ns.UID),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"riskTier":            cedar.String(sv.RiskTier),
			"riskLevel":           cedar.Long(slices.Index(riskLevels, sv.RiskTier)),
			"dataClassification":  cedar.String(sv.DataClassification),
			"classificationLevel": cedar.Long(slices.Index(classificationLevels, sv.DataClassification)),
			"owner":               cedar.String(sv.Owner),
			"team":                cedar.String(sv.Team),
		}),
	}
	t.entities = append(t.entities, server)
	if r.Action != ActionList {
		for _, k := range []cedar.String{"riskTier", "riskLevel", "dataClassification", "classificationLevel"} {
			t.context[k], _ = server.Attributes.Get(k)
		}
	}
	switch r.Action {
	case ActionList:
		t.resource = server.UID
	case ActionCall:
		tool := cedar.Entity{
			UID:     ToolUID(sv.Name, r.Tool.Name),
			Parents: cedar.NewEntityUIDSet(server.UID),
			Attributes: cedar.NewRecord(cedar.RecordMap{
				"name":   cedar.String(r.Tool.Name),
				"server": cedar.String(sv.Name),
			}),
		}
		version := cedar.Entity{
			UID:     ToolVersionUID(sv.Name, r.Tool.Name, r.Tool.Version),
			Parents: cedar.NewEntityUIDSet(tool.UID),
			Attributes: cedar.NewRecord(cedar.RecordMap{
				"version":    cedar.String(r.Tool.Version),
				"deprecated": cedar.Boolean(r.Tool.Deprecated),
			}),
		}
		t.entities = append(t.entities, tool, version)
		t.resource = version.UID
		t.context["annotations"] = annotations(r.Tool.Annotations)
	case ActionReadResource:
		res := cedar.Entity{
			UID:        cedar.NewEntityUID(typeResource, cedar.String(r.URI)),
			Parents:    cedar.NewEntityUIDSet(server.UID),
			Attributes: cedar.NewRecord(cedar.RecordMap{"uri": cedar.String(r.URI)}),
		}
		t.entities = append(t.entities, res)
		t.resource = res.UID
	case ActionGetPrompt:
		pr := cedar.Entity{
			UID:        cedar.NewEntityUID(typePrompt, cedar.String(sv.Name+"/"+r.Prompt)),
			Parents:    cedar.NewEntityUIDSet(server.UID),
			Attributes: cedar.NewRecord(cedar.RecordMap{"name": cedar.String(r.Prompt)}),
		}
		t.entities = append(t.entities, pr)
		t.resource = pr.UID
	}
	return t
}

// agentEntity is the Cedar entity of a principal.
func agentEntity(p agentauth.Principal) cedar.Entity {
	var parents []cedar.EntityUID
	if p.Tenant != "" {
		parents = append(parents, cedar.NewEntityUID(typeTenant, cedar.String(p.Tenant)))
	}
	for _, g := range p.Groups {
		parents = append(parents, cedar.NewEntityUID(typeGroup, cedar.String(g)))
	}
	scopes := make([]cedar.Value, len(p.Scopes))
	for i, s := range p.Scopes {
		scopes[i] = cedar.String(s)
	}
	return cedar.Entity{
		UID:     cedar.NewEntityUID(typeAgent, cedar.String(p.ID)),
		Parents: cedar.NewEntityUIDSet(parents...),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"trustDomain": cedar.String(p.TrustDomain),
			"method":      cedar.String(string(p.Method)),
			"tenant":      cedar.String(p.Tenant),
			"scopes":      cedar.NewSet(scopes...),
		}),
	}
}

// errTargetAction is the error of a request whose Target was built for
// another action: a programming error, decided as a deny.
var errTargetAction = errors.New("policy: the request's target was built for another action")

// cedarRequest builds the Cedar request and its entities, with agent as
// the principal's entity.
func (r *Request) cedarRequest(agent cedar.Entity) (cedar.Request, entities, error) {
	t := r.Target
	if t == nil {
		t = NewTarget(r)
	} else if t.action != r.Action {
		return cedar.Request{}, nil, errTargetAction
	}
	es := make(entities, 0, 1+len(t.entities))
	es = append(append(es, agent), t.entities...)
	return cedar.Request{
		Principal: agent.UID,
		Action:    cedar.NewEntityUID(typeAction, cedar.String(string(r.Action))),
		Resource:  t.resource,
		Context:   t.contextFor(r.Now, r.Principal.TrustDomain),
	}, es, nil
}

// annotations is the context record of a tool's hints, with the MCP
// defaults for hints the tool leaves out.
func annotations(a *mcp.ToolAnnotations) cedar.Record {
	readOnly, destructive, idempotent, openWorld := false, true, false, true
	if a != nil {
		readOnly, idempotent = a.ReadOnlyHint, a.IdempotentHint
		if a.DestructiveHint != nil {
			destructive = *a.DestructiveHint
		}
		if a.OpenWorldHint != nil {
			openWorld = *a.OpenWorldHint
		}
		if readOnly {
			destructive = false
		}
	}
	return cedar.NewRecord(cedar.RecordMap{
		"readOnly":    cedar.Boolean(readOnly),
		"destructive": cedar.Boolean(destructive),
		"idempotent":  cedar.Boolean(idempotent),
		"openWorld":   cedar.Boolean(openWorld),
	})
}
