package policy

import (
	"slices"
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
	// Now is the time of the request.
	Now time.Time
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

// cedarRequest builds the Cedar request and its entities.
func (r *Request) cedarRequest() (cedar.Request, entities) {
	p := r.Principal
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
	agent := cedar.Entity{
		UID:     cedar.NewEntityUID(typeAgent, cedar.String(p.ID)),
		Parents: cedar.NewEntityUIDSet(parents...),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"trustDomain": cedar.String(p.TrustDomain),
			"method":      cedar.String(string(p.Method)),
			"tenant":      cedar.String(p.Tenant),
			"scopes":      cedar.NewSet(scopes...),
		}),
	}
	ns := cedar.Entity{UID: cedar.NewEntityUID(typeNamespace, cedar.String(r.Namespace))}
	es := entities{agent, ns}
	ctx := cedar.RecordMap{
		"now":         cedar.NewDatetime(r.Now),
		"trustDomain": cedar.String(p.TrustDomain),
	}
	req := cedar.Request{
		Principal: agent.UID,
		Action:    cedar.NewEntityUID(typeAction, cedar.String(string(r.Action))),
	}
	if r.Action == ActionList && r.Server.Name == "" {
		req.Resource = ns.UID
		req.Context = cedar.NewRecord(ctx)
		return req, es
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
	es = append(es, server)
	if r.Action != ActionList {
		for _, k := range []cedar.String{"riskTier", "riskLevel", "dataClassification", "classificationLevel"} {
			ctx[k], _ = server.Attributes.Get(k)
		}
	}
	switch r.Action {
	case ActionList:
		req.Resource = server.UID
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
		es = append(es, tool, version)
		req.Resource = version.UID
		ctx["annotations"] = annotations(r.Tool.Annotations)
	case ActionReadResource:
		res := cedar.Entity{
			UID:        cedar.NewEntityUID(typeResource, cedar.String(r.URI)),
			Parents:    cedar.NewEntityUIDSet(server.UID),
			Attributes: cedar.NewRecord(cedar.RecordMap{"uri": cedar.String(r.URI)}),
		}
		es = append(es, res)
		req.Resource = res.UID
	case ActionGetPrompt:
		pr := cedar.Entity{
			UID:        cedar.NewEntityUID(typePrompt, cedar.String(sv.Name+"/"+r.Prompt)),
			Parents:    cedar.NewEntityUIDSet(server.UID),
			Attributes: cedar.NewRecord(cedar.RecordMap{"name": cedar.String(r.Prompt)}),
		}
		es = append(es, pr)
		req.Resource = pr.UID
	}
	req.Context = cedar.NewRecord(ctx)
	return req, es
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
