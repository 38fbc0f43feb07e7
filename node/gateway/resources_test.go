package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestAggregatedResources(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/rich", "1.0.0", richUpstream(t), lookupTool, true)
	talkURL, update := talkbackUpstream(t)
	r.register("corp.hr/talkback", "1.0.0", talkURL, talkbackTools, true)
	_, srv := newGateway(t, r)
	const rich, talk = "mcpmesh://hr/corp.hr%2Frich/", "mcpmesh://hr/corp.hr%2Ftalkback/"
	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			s := connect(t, srv.URL+"/mcp", era)
			if s.InitializeResult().Capabilities.Resources == nil {
				t.Fatal("/mcp does not advertise resources")
			}
			rl, err := s.ListResources(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var uris []string
			for _, res := range rl.Resources {
				uris = append(uris, res.URI)
			}
			if want := []string{rich + "test://readme", talk + "test://x", talk + "test://y"}; !slices.Equal(uris, want) {
				t.Fatalf("resources/list URIs = %q, want %q", uris, want)
			}
			rr, err := s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: rich + "test://readme"})
			if err != nil || rr.Contents[0].Text != "hello from upstream" || rr.Contents[0].URI != rich+"test://readme" {
				t.Fatalf("read = %+v, %v; want the upstream's text under the /mcp URI", rr, err)
			}
			tl, err := s.ListResourceTemplates(t.Context(), nil)
			if err != nil || len(tl.ResourceTemplates) != 1 || tl.ResourceTemplates[0].URITemplate != rich+"test://items/{id}" {
				t.Fatalf("templates = %+v, %v", tl, err)
			}
			rr, err = s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: rich + "test://items/7"})
			if err != nil || rr.Contents[0].Text != "item test://items/7" || rr.Contents[0].URI != rich+"test://items/7" {
				t.Fatalf("templated read = %+v, %v", rr, err)
			}
			cr, err := s.Complete(t.Context(), &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/resource", URI: rich + "test://items/{id}"},
				Argument: mcp.CompleteParamsArgument{Name: "id", Value: "7"}})
			if err != nil || !slices.Equal(cr.Completion.Values, []string{"7-done"}) {
				t.Fatalf("resource completion = %+v, %v", cr, err)
			}
			for _, bad := range []string{"test://readme", "mcpmesh://finance/corp.hr%2Frich/test://readme", "mcpmesh://hr/corp.hr%2Fnone/test://readme", "mcpmesh://hr/%zz/x"} {
				_, err := s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: bad})
				var je *jsonrpc.Error
				if !errors.As(err, &je) || je.Code != jsonrpc.CodeInvalidParams {
					t.Errorf("read %q: err = %v, want -32602", bad, err)
				}
			}
		})
	}

	// A legacy agent subscribes under /mcp's URI and is told under it.
	ada := newLegacyAgent(t, srv.URL+"/mcp", "ada")
	if err := ada.session.Subscribe(t.Context(), &mcp.SubscribeParams{URI: talk + "test://x"}); err != nil {
		t.Fatal(err)
	}
	update("test://x")
	waitFor(t, "the update under /mcp's URI", func() (bool, string) {
		_, updates := ada.seen()
		return slices.Equal(updates, []string{talk + "test://x"}), fmt.Sprint(updates)
	})
}

// TestAggregatedListingAsksUpstreamsAtOnce: /mcp's resources/list asks
// every server at the same time. Each upstream holds its answer until
// the other has been asked too; asked one after the other, the first
// would give up waiting and the listing would miss its resources.
func TestAggregatedListingAsksUpstreamsAtOnce(t *testing.T) {
	var asked sync.WaitGroup
	asked.Add(2)
	both := make(chan struct{})
	go func() { asked.Wait(); close(both) }()
	barrier := func(name string) string {
		s := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, nil)
		var def mcp.Tool
		json.Unmarshal([]byte(lookupTool), &def)
		s.AddTool(&def, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{}, nil
		})
		s.AddResource(&mcp.Resource{URI: "test://" + name, Name: name}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{}, nil
		})
		var once sync.Once
		s.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
			return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
				if method == "resources/list" {
					once.Do(asked.Done)
					select {
					case <-both:
					case <-time.After(10 * time.Second):
						return nil, fmt.Errorf("%s: the other upstream was not asked while this one answered", name)
					}
				}
				return next(ctx, method, req)
			}
		})
		h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	r := newRegistry(t)
	r.register("corp.hr/a", "1.0.0", barrier("a"), lookupTool, true)
	r.register("corp.hr/b", "1.0.0", barrier("b"), lookupTool, true)
	_, srv := newGateway(t, r)
	rl, err := connect(t, srv.URL+"/mcp", "2026-07-28").ListResources(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, res := range rl.Resources {
		uris = append(uris, res.URI)
	}
	if want := []string{"mcpmesh://hr/corp.hr%2Fa/test://a", "mcpmesh://hr/corp.hr%2Fb/test://b"}; !slices.Equal(uris, want) {
		t.Fatalf("resources/list URIs = %q, want %q (in server order)", uris, want)
	}
}
