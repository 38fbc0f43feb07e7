package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// DefaultMaxWait is how long the exporter holds a long poll whose catalog
// has not changed before it answers 304.
const DefaultMaxWait = 25 * time.Second

// ExporterConfig configures the exporter's handler.
type ExporterConfig struct {
	// FSM is the local replica's registry state. Required.
	FSM *state.FSM
	// ConsumerTD identifies the calling BU: on the peer listener, the
	// trust domain of the mTLS peer's SPIFFE ID. An error answers 403.
	// Required.
	ConsumerTD func(*http.Request) (spiffeid.TrustDomain, error)
	// MaxWait bounds a long poll; zero is DefaultMaxWait. A request's own
	// deadline and its "wait" parameter (seconds) shorten it.
	MaxWait time.Duration
}

// Exporter serves GET Path?since=<version>[&wait=<seconds>][&killed=1]:
// the catalog this BU exports to the caller's trust domain, and nothing
// else; with killed=1 (KilledParam) also the exported tools a kill switch
// stops, apart (Catalog.Killed). When the
// catalog's version differs from since (or since is absent) it answers at
// once, 200 with a Catalog; otherwise it waits for the registry to apply
// a change that moves the version, up to the wait, and then answers 304
// Not Modified. Every answer carries VersionHeader. It is safe for
// concurrent use.
type Exporter struct {
	cfg    ExporterConfig
	logger *slog.Logger
}

var _ http.Handler = (*Exporter)(nil)

// NewExporter returns the exporter's handler.
func NewExporter(cfg ExporterConfig, opts ...Option) (*Exporter, error) {
	if cfg.FSM == nil || cfg.ConsumerTD == nil {
		return nil, errors.New("catalog exporter: FSM and ConsumerTD are required")
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	o := newOptions(opts)
	if o.reg != nil {
		if err := o.reg.Register(newExportedCollector(cfg.FSM)); err != nil {
			return nil, fmt.Errorf("catalog exporter: register metrics: %w", err)
		}
	}
	return &Exporter{cfg: cfg, logger: o.logger}, nil
}

// ServeHTTP answers a catalog request.
func (e *Exporter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpError(w, http.StatusMethodNotAllowed, "method %s: the catalog is read with GET", r.Method)
		return
	}
	td, err := e.cfg.ConsumerTD(r)
	if err != nil || td.IsZero() {
		httpError(w, http.StatusForbidden, "the calling trust domain could not be identified: %v", err)
		return
	}
	q := r.URL.Query()
	var since uint64
	hasSince := q.Has("since")
	if hasSince {
		if since, err = strconv.ParseUint(q.Get("since"), 10, 64); err != nil {
			httpError(w, http.StatusBadRequest, "since %q: want the catalog version last received, a whole number (0 for none)", q.Get("since"))
			return
		}
	}
	wait := e.cfg.MaxWait
	if s := q.Get("wait"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			httpError(w, http.StatusBadRequest, "wait %q: want whole seconds, at least 0", s)
			return
		}
		wait = min(wait, time.Duration(n)*time.Second)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	fsm := e.cfg.FSM
	for {
		// Read the applied index first: a change applied after it wakes
		// the wait below, so none is missed.
		next := fsm.AppliedIndex() + 1
		v, err := fsm.CatalogVersion(td.Name())
		if err != nil {
			e.logger.Error("catalog exporter: read catalog version", "consumer", td.Name(), "error", err)
			httpError(w, http.StatusInternalServerError, "reading the catalog failed")
			return
		}
		if !hasSince || v != since {
			e.answer(w, td.Name(), q.Get(KilledParam) == "1")
			return
		}
		if err := fsm.WaitApplied(ctx, next); err != nil {
			w.Header().Set(VersionHeader, strconv.FormatUint(v, 10))
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
}

// answer sends the catalog exported to td, with its killed entries when
// the consumer asked for them. The hash is computed over what is sent
// (the mark's covers the killed entries, which a consumer that did not
// ask does not get).
func (e *Exporter) answer(w http.ResponseWriter, td string, withKilled bool) {
	ec, err := e.cfg.FSM.ExportedCatalog(td)
	if err != nil {
		e.logger.Error("catalog exporter: build catalog", "consumer", td, "error", err)
		httpError(w, http.StatusInternalServerError, "building the catalog failed")
		return
	}
	cat := Catalog{Consumer: td, Version: ec.Version, Tools: ec.Tools}
	if withKilled {
		cat.Killed = ec.Killed
	}
	if cat.Hash, err = state.CatalogHashOf(cat.Tools, cat.Killed); err != nil {
		e.logger.Error("catalog exporter: hash catalog", "consumer", td, "error", err)
		httpError(w, http.StatusInternalServerError, "building the catalog failed")
		return
	}
	body, err := json.Marshal(cat)
	if err != nil || len(body) > MaxCatalogBytes {
		e.logger.Error("catalog exporter: catalog too large or unencodable", "consumer", td, "bytes", len(body), "error", err)
		httpError(w, http.StatusInternalServerError, "the catalog exported to %s is too large to send (%d bytes, at most %d): export fewer tools", td, len(body), MaxCatalogBytes)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(VersionHeader, strconv.FormatUint(ec.Version, 10))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": fmt.Sprintf(format, args...)}})
}
